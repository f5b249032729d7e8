"""The product's prose as a contract: the README stays a user's page of about 8 KB that links into
docs/, and no dev-log wording (who changed what when, a commit hash used as a date, a note to
oneself) sits in the README, docs/ or the package's docstrings and messages. Measurements may name
a baseline revision they ran beside; they name a bench script, a machine and a date."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_LOG = [re.compile(p, re.I) for p in (
    r"\b(previous|last|earlier|this|next|a later) (session|stop)\b",
    r"\byesterday\b",
    r"\b(TODO|FIXME|XXX)\b",
    r"\b(since|as of|until|up to) `?[0-9a-f]{7,40}\b",
    r"\b(I|we) (fixed|added|changed|moved|removed|broke|rewrote)\b",
    r"\b(fixed|added|changed) (yesterday|today|this week|last week)\b",
)]


def _product_files():
    yield ROOT / "README.md"
    yield from sorted((ROOT / "docs").glob("*.md"))
    yield from sorted((ROOT / "trtprof").rglob("*.py"))


def dev_log_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if any(p.search(line) for p in DEV_LOG)]


def test_no_dev_log_wording_in_the_product():
    hits = [f"{p.relative_to(ROOT)}: {line}" for p in _product_files() for line in dev_log_lines(p.read_text())]
    assert not hits, "\n".join(hits)


def test_the_dev_log_check_can_fail():
    planted = ("Fixed in the previous session.\nfaster since 755718e\nTODO: measure\n"
               "we fixed the flush\nthe nsys session clock\ncompared with baseline `f315613`\n")
    assert dev_log_lines(planted) == ["Fixed in the previous session.", "faster since 755718e", "TODO: measure",
                                      "we fixed the flush"]


def test_the_readme_is_a_users_page_that_links_into_docs():
    text = (ROOT / "README.md").read_text()
    assert 5_000 <= len(text.encode()) <= 10_500, len(text.encode())
    for doc in ("recording.md", "schema.md", "measurements.md", "report.md", "development.md"):
        assert f"docs/{doc}" in text, doc
        assert (ROOT / "docs" / doc).is_file(), doc
    for heading in ("## Set-up", "## Commands"):
        assert heading in text
    assert "profile(" in text and "exit code" in text.lower()
