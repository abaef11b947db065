// Keyboard shortcuts: a key clicks the visible button whose data-shortcut matches it, unless the person is
// typing. "c" jumps to the correction box; Escape leaves a text box. The pages work without this file.
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const typing = event.target.closest("input, textarea, select, [contenteditable]");
  if (typing) {
    if (event.key === "Escape") typing.blur();
    return;
  }
  if (event.key === "c") {
    const box = document.querySelector("textarea[name=correction]");
    if (box) {
      event.preventDefault();
      box.focus();
    }
    return;
  }
  const button = document.querySelector(`[data-shortcut="${CSS.escape(event.key)}"]:not([disabled])`);
  if (button && button.offsetParent !== null) {
    event.preventDefault();
    button.click();
  }
});
