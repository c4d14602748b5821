"""FileStore: temp files named after their writer, the sweep, durability, errors."""

from __future__ import annotations

import asyncio
import errno
import multiprocessing
import os
import pickle
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxystore import _tempfiles
from proxystore.aio.file import FileStore as AsyncFileStore
from proxystore.exceptions import (
    BatchWriteError,
    ConfigurationError,
    StoreOperationError,
)
from proxystore.store.file import FileStore

TIMEOUT = 30.0

# A writer that stops mid-write: it writes the first part of the payload to
# its temp file, reports the temp file's name, and waits for a line on stdin
# (which never comes when the test kills it).
_HELD_WRITER = """
import sys
import builtins
import proxystore.store.file as file_module
from proxystore.store.file import FileStore

real_open = builtins.open

class Held:
    def __init__(self, path, mode):
        self.path, self.file = path, real_open(path, mode)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.file.close()
    def write(self, part):
        self.file.write(part)
        self.file.flush()
        print(self.path, flush=True)
        sys.stdin.readline()
        return len(part)

def held_open(path, mode="r", *args, **kwargs):
    if "w" in mode or "x" in mode:
        return Held(path, mode)
    return real_open(path, mode, *args, **kwargs)

file_module.open = held_open  # the module's files open through it
FileStore("writer", sys.argv[1]).set(b"x" * 100_000)
"""


class HeldWriter:
    """A real process held mid-write into a FileStore directory."""

    def __init__(self, store_dir: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
        self.process = subprocess.Popen(
            [sys.executable, "-c", _HELD_WRITER, str(store_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        assert line, "the writer exited before writing"
        self.temp = Path(line)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(TIMEOUT)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def held_writer(tmp_path: Path) -> Iterator[HeldWriter]:
    FileStore("setup", tmp_path)  # the directory exists before the writer
    writer = HeldWriter(tmp_path)
    try:
        yield writer
    finally:
        writer.close()


def _hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_temp_file_is_named_after_its_writer(
    held_writer: HeldWriter, tmp_path: Path
) -> None:
    name = held_writer.temp.name
    assert held_writer.temp.parent == tmp_path
    host, pid, start, random = name[len(".tmp-") :].rsplit("-", 3)
    assert host == _tempfiles.host_name()
    assert int(pid) == held_writer.process.pid
    assert start == _tempfiles.process_start(held_writer.process.pid)
    assert len(random) == 16


def test_killed_writers_temp_file_is_swept_on_open(
    held_writer: HeldWriter, tmp_path: Path, store_name: str
) -> None:
    assert held_writer.temp.exists()
    # Alive, however slow: its temp file is left alone.
    assert FileStore(store_name, tmp_path).sweep() == 0
    assert held_writer.temp.exists()
    held_writer.kill()
    assert held_writer.temp.exists()
    # This process swept the directory when it first opened it: later opens
    # leave the sweep to `sweep()` and to processes opening it afresh.
    FileStore(store_name, tmp_path)
    assert held_writer.temp.exists()
    _open_in_new_process(tmp_path)  # a process's first open sweeps it
    assert _hidden(tmp_path) == []


def _open_in_new_process(directory: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from proxystore.store.file import FileStore; "
            "FileStore('opener', sys.argv[1])",
            str(directory),
        ],
        env=env,
        check=True,
        timeout=TIMEOUT,
    )


def _orphan(directory: Path) -> Path:
    """A temp file of a writer on this host that is gone."""
    path = directory / f".tmp-{_tempfiles.host_name()}-{_dead_pid()}-1-{'e' * 16}"
    path.write_bytes(b"x")
    return path


def test_each_directory_is_swept_once_per_process(
    tmp_path: Path, store_name: str
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    FileStore(store_name, first)
    left = _orphan(first)
    FileStore(store_name, first)
    AsyncFileStore(store_name, first)  # both faces: one sweep per process
    assert left.exists()
    second.mkdir()
    swept = _orphan(second)
    FileStore(store_name, second)  # another directory: its first open sweeps
    assert not swept.exists()
    assert FileStore(store_name, first).sweep() == 1  # on demand, always
    assert not left.exists()


def _open_and_report(directory: str, orphan: str, outbox: Any) -> None:
    FileStore("child", directory)
    outbox.put(os.path.exists(orphan))


def test_forked_child_sweeps_on_its_first_open(tmp_path: Path, store_name: str) -> None:
    FileStore(store_name, tmp_path)
    orphan = _orphan(tmp_path)
    context = multiprocessing.get_context("fork")
    outbox = context.Queue()
    child = context.Process(
        target=_open_and_report, args=(str(tmp_path), str(orphan), outbox)
    )
    child.start()
    try:
        assert outbox.get(timeout=TIMEOUT) is False  # a new process: it sweeps
        child.join(TIMEOUT)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join(TIMEOUT)
        outbox.close()
        outbox.join_thread()


def test_sweep_keeps_other_hosts_and_foreign_files(
    tmp_path: Path, store_name: str
) -> None:
    store = FileStore(store_name, tmp_path)
    dead_pid = _dead_pid()
    kept = [
        f".tmp-some-other-host-{dead_pid}-1234-{'a' * 16}",  # another host's
        ".tmp-0123456789abcdef0123456789abcdef",  # not in our format
        ".hidden-by-the-user",
    ]
    for name in kept:
        (tmp_path / name).write_bytes(b"x")
    host = _tempfiles.host_name()
    start = _tempfiles.process_start(os.getpid())
    gone = [
        f".tmp-{host}-{dead_pid}-1234-{'b' * 16}",  # its writer is gone
        f".tmp-{host}-{os.getpid()}-{int(start or 0) + 1}-{'c' * 16}",  # pid reused
    ]
    for name in gone:
        (tmp_path / name).write_bytes(b"x")
    mine = f".tmp-{_tempfiles.writer_id()}-{'d' * 16}"  # this live process's
    (tmp_path / mine).write_bytes(b"x")
    assert store.sweep() == 2
    assert _hidden(tmp_path) == sorted([*kept, mine])


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(TIMEOUT)
    return child.pid


def test_writer_id_changes_in_a_forked_child() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, _tempfiles.writer_id().encode())
        os._exit(0)
    os.close(write)
    try:
        child_id = os.read(read, 1000).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert child_id.split("-")[-2] == str(pid)
    assert child_id != _tempfiles.writer_id()


@pytest.mark.parametrize("durable", [False, True])
def test_durable_writes_round_trip(
    durable: bool, tmp_path: Path, store_name: str
) -> None:
    store = FileStore(store_name, tmp_path, durable=durable)
    key = store.set(list(range(1000)))
    assert store.get(key) == list(range(1000))
    assert store.config()["durable"] is durable
    clone = pickle.loads(pickle.dumps(store.proxy([1])))
    assert clone == [1]
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"store_dir": ""}, "empty"),
        ({"store_dir": 5}, "must be a str or path"),
        ({"store_dir": b"/tmp/x"}, "must be a str or path"),
        ({"store_dir": None}, "must be a str or path"),
        ({"durable": "yes"}, "durable"),
    ],
)
def test_bad_arguments_are_refused_at_construction(
    kwargs: dict[str, Any], message: str, tmp_path: Path, store_name: str
) -> None:
    arguments: dict[str, Any] = {"store_dir": tmp_path, **kwargs}
    with pytest.raises(ConfigurationError, match=message) as info:
        FileStore(store_name, **arguments)
    assert store_name in str(info.value)


def _mount_tmpfs(directory: Path, options: str) -> None:
    """Mount a small tmpfs (root only); skip where that cannot work, fail in CI."""
    directory.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        reason = "mounting a tmpfs needs root and mount(8)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs: {done.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def _unmount(directory: Path) -> None:
    done = subprocess.run(["umount", str(directory)], capture_output=True, check=False)
    if done.returncode != 0:  # busy: detach it now, the kernel frees it later
        subprocess.run(["umount", "-l", str(directory)], check=True)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB file system, unmounted afterwards even if the test fails."""
    directory = tmp_path / "small"
    _mount_tmpfs(directory, "size=1m")
    try:
        yield directory
    finally:
        _unmount(directory)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A read-only tmpfs (root writes past mode bits) holding one object's key."""
    directory = tmp_path / "ro"
    _mount_tmpfs(directory, "size=1m")
    try:
        key = FileStore("setup", directory / "store").set([1, 2])
        subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
        yield directory / "store", key
    finally:
        _unmount(directory)


def _assert_names_store(
    err: StoreOperationError, store: FileStore, operation: str
) -> None:
    message = str(err)
    assert repr(store.name) in message
    assert f"{operation} on FileStore" in message
    assert store.store_dir in message


def test_disk_full_is_our_error_and_leaves_nothing(
    small_tmpfs: Path, store_name: str
) -> None:
    store = FileStore(store_name, small_tmpfs)
    with pytest.raises(StoreOperationError) as info:
        store.set(b"x" * 2_000_000)
    _assert_names_store(info.value, store, "set")
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC
    assert list(small_tmpfs.iterdir()) == []  # the partial temp file is gone
    key = store.set(b"small")  # the store still works once there is room
    assert store.get(key) == b"small"


def test_read_only_directory_errors_name_store_and_operation(
    read_only_dir: tuple[Path, str], store_name: str
) -> None:
    directory, existing = read_only_dir
    store = FileStore(store_name, directory)  # opening (and sweeping) works
    with pytest.raises(StoreOperationError) as info:
        store.set([1, 2, 3])
    _assert_names_store(info.value, store, "set")
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EROFS
    with pytest.raises(StoreOperationError) as info:
        store.evict(existing)
    _assert_names_store(info.value, store, "evict")
    assert store.get(existing) == [1, 2]  # reads still work


def test_unreadable_object_is_our_error(tmp_path: Path, store_name: str) -> None:
    store = FileStore(store_name, tmp_path)
    (tmp_path / "a-directory").mkdir()  # reading it fails with EISDIR
    with pytest.raises(StoreOperationError) as info:
        store.get("a-directory")
    _assert_names_store(info.value, store, "get")
    assert isinstance(info.value.__cause__, IsADirectoryError)


@pytest.mark.parametrize("face", ["sync", "async"])
def test_batch_that_fills_the_disk_leaves_nothing(
    face: str, small_tmpfs: Path, store_name: str
) -> None:
    objects = [os.urandom(400_000) for _ in range(4)]  # 1.6 MB on a 1 MiB disk
    if face == "sync":
        store = FileStore(store_name, small_tmpfs)
        with pytest.raises(BatchWriteError) as info:
            store.set_batch(objects)
    else:
        astore = AsyncFileStore(store_name, small_tmpfs)
        with pytest.raises(BatchWriteError) as info:
            asyncio.run(astore.aset_batch(objects))
    message = str(info.value)
    assert "set_batch of 4 objects" in message
    assert repr(store_name) in message
    assert "were removed" in message
    assert isinstance(info.value.__cause__, StoreOperationError)
    assert isinstance(info.value.__cause__.__cause__, OSError)
    assert info.value.__cause__.__cause__.errno == errno.ENOSPC
    assert list(small_tmpfs.iterdir()) == []


@pytest.mark.parametrize("face", ["sync", "async"])
def test_planted_symlink_or_fifo_at_a_key_is_refused_not_followed(
    tmp_path: Path, store_name: str, face: str
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not for the store")
    directory = tmp_path / "store"
    directory.mkdir()
    (directory / "link").symlink_to(secret)
    os.mkfifo(directory / "fifo")  # opening it for reading would block
    store = FileStore(store_name, directory)
    aio = AsyncFileStore(store_name, directory)

    def get(key: str) -> Any:
        if face == "sync":
            return store.get(key, deserialize=False)
        return asyncio.run(asyncio.wait_for(aio.aget(key, deserialize=False), TIMEOUT))

    with pytest.raises(StoreOperationError) as info:
        get("link")
    _assert_names_store(info.value, store, "get")
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ELOOP
    with pytest.raises(StoreOperationError) as info:
        get("fifo")
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EINVAL


def test_a_file_at_the_temporary_name_is_never_overwritten(
    tmp_path: Path, store_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"intact")
    directory = tmp_path / "store"
    directory.mkdir()
    monkeypatch.setattr("proxystore.store.file.temp_name", lambda: ".planted")
    (directory / ".planted").symlink_to(victim)
    store = FileStore(store_name, directory)
    with pytest.raises(StoreOperationError) as info:
        store.set(b"data")
    assert isinstance(info.value.__cause__, FileExistsError)
    assert victim.read_bytes() == b"intact"
