"""edgert.progress: a bar on a terminal, nothing on a pipe unless asked, plain lines then."""

from __future__ import annotations

import io

import pytest

from edgert import progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def _default():
    yield
    progress.set_enabled(None)


def _run(stream, total=7):
    with progress.Progress("work", total, stream=stream) as bar:
        for _ in range(total):
            bar.update()
    return stream.getvalue()


def test_bar_on_a_terminal_only():
    drawn = _run(_Terminal())
    assert drawn.startswith("\r") and drawn.endswith("\n") and "work [" + "#" * progress.BAR_WIDTH + "] 7/7" in drawn
    assert _run(io.StringIO()) == ""   # a pipe: silent
    progress.set_enabled(False)
    assert _run(_Terminal()) == ""


def test_forced_on_a_pipe_writes_plain_lines():
    progress.set_enabled(True)
    lines = _run(io.StringIO()).splitlines()
    assert lines and "\r" not in "".join(lines) and lines[-1].startswith("work [") and " 7/7 " in lines[-1]
    assert len(lines) == len(set(lines))   # the final count once


def test_track_yields_every_item_and_counts_without_a_total():
    progress.set_enabled(True)
    assert list(progress.track(range(5), "items")) == list(range(5))
    stream = io.StringIO()
    bar = progress.Progress("open-ended", stream=stream)
    bar.update(3)
    bar.close()
    assert stream.getvalue().splitlines()[-1].startswith("open-ended: 3 ")
