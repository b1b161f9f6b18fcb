"""The ``ffprobe`` and ``ffmpeg`` command lines of decoding, built with ffmpeg-python.

Only the argument lists come from ffmpeg-python (``ffmpeg.input(...).output(...)`` and
``compile``); :mod:`pipeline.perception.decode` runs them itself, under its own wall-clock
timeout and watchdog. ``ffmpeg.probe`` is not called directly: it waits on ffprobe with no
timeout, so a file on a hung disk or a stalled network mount would block a worker for ever.
:func:`probe_command` builds the very argument list ``ffmpeg.probe`` runs (its kwargs go
through the same ffmpeg-python conversion), and ``tests/pipeline/perception/test_ffmpeg_cli.py``
checks the two against each other.

Every command starts with the global flags that keep ffmpeg quiet and off standard input;
they are put right after the program name (ffmpeg-python's ``global_args`` would put them
after the output, where ffmpeg warns about trailing options).
"""

from __future__ import annotations

import ffmpeg
from ffmpeg._utils import convert_kwargs_to_cmd_line_args

# ffmpeg's global flags for every decode command: no reading of stdin (a worker has none to
# give), errors only on stderr (parsed for damage reports), no banner.
_FFMPEG = ("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error")


def probe_command(path: str, **options: str) -> list[str]:
    """The ffprobe argument list ``ffmpeg.probe(path, **options)`` runs.

    Args:
        path: the video file or URL.
        **options: extra ffprobe options, ffmpeg-python style (``v="error"`` -> ``-v error``).

    Returns:
        ``["ffprobe", "-show_format", "-show_streams", "-of", "json", <options>, path]``.
    """
    return ["ffprobe", "-show_format", "-show_streams", "-of", "json",
            *convert_kwargs_to_cmd_line_args(options), path]


def packet_times_command(path: str) -> list[str]:
    """The ffprobe argument list that prints each video packet's presentation time, one a line."""
    options = {"v": "error", "select_streams": "v:0", "show_entries": "packet=pts_time", "of": "csv=p=0"}
    return ["ffprobe", *convert_kwargs_to_cmd_line_args(options), path]


def decode_command(path: str, fps: float, size: tuple[int, int] | None, threads: int,
                   time_start: float = 0.0, duration: float | None = None) -> list[str]:
    """The ffmpeg argument list that decodes the first video stream to raw RGB on stdout.

    Args:
        path: the video file.
        fps: output frame rate (ffmpeg's ``fps`` filter: the frame presented at each
            output instant, duplicated or dropped as needed).
        size: output (width, height) in pixels, scaled with area averaging; None keeps the
            source size.
        threads: decoder threads (0: ffmpeg decides).
        time_start: input seek, seconds (0: none).
        duration: seconds to decode from ``time_start``; None: to the end.

    Returns:
        The argument list; stdout carries ``width x height x 3`` bytes a frame.
    """
    seek = {"ss": f"{time_start:.6f}"} if time_start > 0 else {}
    stream = ffmpeg.input(path, threads=str(threads), **seek)["v:0"].filter("fps", fps=f"{fps:.9f}")
    if size is not None:
        stream = stream.filter("scale", size[0], size[1], flags="area")
    limit = {"t": f"{duration:.6f}"} if duration is not None else {}
    out = stream.output("pipe:1", format="rawvideo", pix_fmt="rgb24", an=None, sn=None, **limit)
    return out.compile(cmd=list(_FFMPEG))


def one_frame_command(path: str, seek: float, output_seek: bool) -> list[str]:
    """The ffmpeg argument list that decodes one grey frame of the first video stream at ``seek`` s.

    Args:
        path: the video file.
        seek: seconds.
        output_seek: False seeks on the input (fast, through the container's index); True
            decodes from the start and drops frames until ``seek`` (slow, but works in
            containers without a seek index).
    """
    at = {"ss": f"{seek:.6f}"}
    source = ffmpeg.input(path, **({} if output_seek else at))["v:0"]
    out = source.output("pipe:1", format="rawvideo", pix_fmt="gray", **{"frames:v": 1}, **(at if output_seek else {}))
    return out.compile(cmd=list(_FFMPEG))
