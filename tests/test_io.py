"""Result files: atomic writes, their mode, errors naming the user's path; the interference watch."""



def test_result_files_get_the_umask_mode(tmp_path):
    import os
    import stat

    from pipespec.io import write_text_atomic

    previous = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "r.json", "{}")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
        os.umask(0o077)
        path = write_text_atomic(tmp_path / "s.json", "{}")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        os.umask(previous)


def test_an_unwritable_output_names_the_users_path(tmp_path):
    import pytest

    from pipespec.errors import ConfigError
    from pipespec.io import write_text_atomic

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot write") as info:
        write_text_atomic(blocker / "out.json", "{}")
    assert str(blocker / "out.json") in str(info.value) and ".tmp" not in str(info.value)


def test_interference_share_counts_other_processes_not_our_children():
    # the arithmetic: 2 s of wall on os.cpu_count() CPUs, the machine busy 1.5 s more than we were
    import os
    import subprocess
    import sys

    from pipespec.interference import Reading, Watch, other_share

    cpus = os.cpu_count() or 1
    share = other_share(Reading(0.0, 10.0, 4.0), Reading(2.0, 12.5, 5.0))
    assert share == min(1.5 / (2.0 * cpus), 1.0)
    assert other_share(Reading(0.0, None, 1.0), Reading(1.0, None, 2.0)) is None
    with Watch() as watch:  # a busy child of ours is not interference (whatever else the machine does, the
        subprocess.run([sys.executable, "-c", "sum(range(3_000_000))"], check=True)  # share stays a share)
    assert watch.share is None or 0.0 <= watch.share <= 1.0
