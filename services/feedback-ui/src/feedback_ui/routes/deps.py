"""The role checks every route declares, by name."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from feedback_ui.auth import User, require

Annotator = Annotated[User, Depends(require("annotator"))]
AnnotatorWrite = Annotated[User, Depends(require("annotator", write=True))]
Admin = Annotated[User, Depends(require("admin"))]
AdminWrite = Annotated[User, Depends(require("admin", write=True))]
