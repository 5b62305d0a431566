"""``python -m mega_fairseq [info [--arch NAME]]``: what the plugin registers with fairseq (`cli/info.py`)."""

from .cli.info import main

main()
