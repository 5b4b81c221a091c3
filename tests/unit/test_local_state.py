"""Local table state survives only a clean stop; after a crash it is restored from the
changelogs instead."""

from __future__ import annotations

from pathlib import Path

from tactful.service.local_state import MARK, close_local_state, open_local_state


def _tables(root: Path) -> Path:
    tabledir = root / "tables"
    (tabledir / "customers-0.db").mkdir(parents=True)
    (tabledir / "customers-0.db" / "CURRENT").write_text("MANIFEST-000001\n")
    return tabledir


def test_state_of_a_clean_stop_is_kept(tmp_path: Path) -> None:
    tabledir = _tables(tmp_path)
    close_local_state(tabledir)
    assert open_local_state(tabledir) is False
    assert (tabledir / "customers-0.db" / "CURRENT").exists()
    assert not (tabledir / MARK).exists()  # a crash of this run must not look clean


def test_state_left_by_a_crash_is_discarded(tmp_path: Path) -> None:
    tabledir = _tables(tmp_path)
    assert open_local_state(tabledir) is True
    assert not tabledir.exists()


def test_a_crash_after_a_clean_restart_is_noticed(tmp_path: Path) -> None:
    tabledir = _tables(tmp_path)
    close_local_state(tabledir)
    open_local_state(tabledir)  # this run then dies without close_local_state
    assert open_local_state(tabledir) is True


def test_first_start_has_nothing_to_discard(tmp_path: Path) -> None:
    assert open_local_state(tmp_path / "tables") is False
    close_local_state(tmp_path / "tables")  # nothing was created: nothing to mark
    assert not (tmp_path / "tables").exists()
