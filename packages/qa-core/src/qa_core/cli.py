"""`qa-core`: small commands around the shared library.

qa-core lm serve           start the local llama.cpp server with the bundled SmolLM2 model
qa-core search "query"     show what the retriever finds
qa-core ask "question"     answer one question with the baseline program (needs an LM server)
qa-core baseline           rebuild the shipped baseline program state from the train split
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from qa_core.settings import CoreSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="qa-core", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    lm = commands.add_parser("lm", help="the local LM server")
    lm.add_argument("action", choices=["serve", "path"])
    search = commands.add_parser("search", help="search the corpus")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=3)
    ask = commands.add_parser("ask", help="answer one question")
    ask.add_argument("question")
    baseline = commands.add_parser("baseline", help="rebuild the baseline program state")
    baseline.add_argument("--demos", type=int, default=2, help="labelled demos to include")
    baseline.add_argument("--out", type=Path, help="default: BASELINE_PROGRAM_PATH")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = CoreSettings()
    if args.command == "lm":
        if args.action == "path":
            print(settings.gguf_path or "no GGUF model installed")
            sys.exit(0 if settings.gguf_path else 1)
        from qa_core.lm_server import serve

        serve(settings)
    elif args.command == "search":
        from qa_core.corpus import cached_index

        for passage in cached_index(settings.corpus_dir, settings.chunk_words).search(args.query, args.k):
            print(passage.as_prompt_line()[:300], end="\n\n")
    elif args.command == "ask":
        from qa_core.lm import configure_dspy
        from qa_core.program import build_program

        configure_dspy(settings)
        result = build_program(settings)(question=args.question)
        print(result.answer)
        print("citations:", ", ".join(result.citations) or "none", "| grounded:", result.grounded)
    elif args.command == "baseline":
        from qa_core.baseline import build_baseline

        out = args.out or settings.baseline_program_path
        build_baseline(settings, args.demos).save(str(out))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
