"""docs/onboarding.md as the tests read it: its two worked examples, each with its own blocks.

The page's first part onboards the Telco extract, its last section (``SECOND``) a weekly
dataset built from an event log. Each test follows one example, so it takes the blocks of
that part only.
"""

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "onboarding.md"
SECOND = "\n## A second example: weekly snapshots from an event log\n"


def page_blocks(language: str, example: int = 1) -> list[str]:
    """The ```language blocks of one example (1: the Telco extract, 2: the event log)."""
    first, second = PAGE.read_text().split(SECOND)
    return re.findall(rf"```{language}\n(.*?)```", first if example == 1 else second, flags=re.S)


def write_blocks(project: Path, example: int) -> str:
    """Every SQL and YAML block of the example written where its first line says; returns its one bash block."""
    for block in page_blocks("sql", example) + page_blocks("yaml", example):
        path = re.match(r"(?:--|#) ((?:models|seeds)/\S+)\n", block).group(1)
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(block)
    [commands] = page_blocks("bash", example)
    return commands
