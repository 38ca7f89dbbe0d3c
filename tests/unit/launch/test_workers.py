"""Local workers (bench/launch/workers.py): the parts that need no worker process. Workers training
for real are in tests/e2e/test_launcher.py and tests/e2e/test_distributed.py."""

from bench.launch.workers import launch_dir


def test_launches_from_one_process_in_one_second_keep_their_own_folders(tmp_path):
    """Each launch's cells file, logs and status files go to a folder of its own, even for launches
    started in the same second by the same process (the folder name is the second and the pid)."""
    parent = tmp_path / ".workers"
    folders = [launch_dir(parent) for _ in range(3)]
    assert len(set(folders)) == 3 and all(f.is_dir() and f.parent == parent for f in folders)
    assert len(list(parent.iterdir())) == 3
