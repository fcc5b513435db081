"""The pruning of hbdeploy's backups (layout.prune_backups), run by sh on a folder here;
the lab's rollback test (test_2_operations) runs it on the nodes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hbdeploy import layout


def prune(folder: Path, name: str, keep: str) -> list[str]:
    script = layout.prune_backups(name, f"{layout.BACKUP_DIR}/{keep}").replace(
        layout.BACKUP_DIR, str(folder))
    subprocess.run(["sh", "-c", script], check=True)
    return sorted(p.name for p in folder.iterdir())


def test_the_oldest_stamps_go_whatever_their_mtimes_and_never_the_new_one(
        tmp_path: Path) -> None:
    stamps = [f"2026120{d}T000000" for d in range(1, 8)]
    for i, stamp in enumerate(stamps):
        path = tmp_path / f"haresources.{stamp}"
        path.write_text(stamp)
        os.utime(path, (1_000_000 - i, 1_000_000 - i))  # the newest stamp has the oldest mtime
    (tmp_path / "haresources.20261209T000000.part").write_text("half")
    (tmp_path / "ha.cf.20261201T000000").write_text("another file's")
    # the run's own backup is not the newest stamp (a clock set back): kept all the same
    kept = prune(tmp_path, "haresources", "haresources.20261201T000000")
    assert kept == ["ha.cf.20261201T000000", "haresources.20261201T000000",
                    *[f"haresources.{s}" for s in stamps[3:]],
                    "haresources.20261209T000000.part"]
    assert len([k for k in kept if k.startswith("haresources.") and "part" not in k]) == (
        layout.BACKUP_GENERATIONS)
