"""TensorBoard event files of a training run: written synchronously, read back without TensorBoard.

Every training run (:mod:`labelfree.training.workflow`) writes its per-epoch scalars and
preview images through :class:`ScalarWriter`; tests and reports read them with
:func:`read_scalars`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from labelfree.io.atomic import write_error


class ScalarWriter:
    """TensorBoard scalars (and preview images), on disk as soon as they are logged.

    tensorboardX's ``SummaryWriter`` hands events to a background thread through a queue
    that ``flush()`` does not drain, so a killed job loses its last epochs' scalars. This
    writes each epoch's events synchronously into the usual ``events.out.tfevents.*`` file
    (the process id in the name keeps a resumed run from appending to the killed run's file).
    """

    def __init__(self, logdir: Path) -> None:
        self._logdir = logdir
        self._events = None  # opened with the first scalars: a run that fails before them leaves no file

    def add_scalars(self, scalars: dict[str, float], step: int) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        with self._write_errors():
            for tag, value in scalars.items():
                self._write(Event(wall_time=time.time(), step=int(step), summary=scalar(tag, float(value))))
            if self._events is not None:
                self._events.flush()

    def add_image(self, tag: str, image, step: int) -> None:
        """One grey (H, W) image with values in [0, 1] (a tensor or an array)."""
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import image as image_summary

        array = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
        with self._write_errors():
            self._write(Event(wall_time=time.time(), step=int(step),
                              summary=image_summary(tag, array[None], dataformats="CHW")))
            self._events.flush()

    @contextlib.contextmanager
    def _write_errors(self) -> Iterator[None]:
        """A failed write (disk full, quota) as the project's one-line ``OutputWriteError``."""
        try:
            yield
        except OSError as e:
            path = Path(self._events._file_name) if self._events is not None else self._logdir
            raise write_error(path, e, earlier_kept=False) from e

    def _write(self, event) -> None:
        from tensorboardX.event_file_writer import EventsWriter

        if self._events is None:
            self._logdir.mkdir(parents=True, exist_ok=True)
            self._events = EventsWriter(str(self._logdir / "events"), filename_suffix=f".{os.getpid()}")
        self._events.write_event(event)

    def close(self) -> None:
        if self._events is not None:
            self._events.close()


def read_scalars(logdir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of every scalar in a logdir's TensorBoard event files (file order)."""
    import struct

    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(logdir).glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset + 12 <= len(data):  # TFRecord framing: length, its CRC, the record, its CRC
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            record = data[offset + 12:offset + 12 + length]
            offset += 12 + length + 4
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars
