"""The decode command lines come from ffmpeg-python and match what it would run itself."""

from __future__ import annotations

import json
import subprocess
import types

import ffmpeg
import pytest

from pipeline.perception import ffmpeg_cli


class _CapturedPopen:
    """Stands in for subprocess.Popen inside ffmpeg.probe: records the argument list."""

    args: list[str] = []

    def __init__(self, args, **_kwargs):
        type(self).args = list(args)
        self.returncode = 0

    def communicate(self):
        return json.dumps({"streams": [], "format": {}}).encode(), b""


def test_probe_command_is_what_ffmpeg_probe_runs(monkeypatch):
    # only ffmpeg._probe's view of subprocess: the worker's other threads keep the real Popen
    monkeypatch.setattr(ffmpeg._probe, "subprocess", types.SimpleNamespace(Popen=_CapturedPopen, PIPE=subprocess.PIPE))
    ffmpeg.probe("/data/clip one.mp4", v="error")
    assert ffmpeg_cli.probe_command("/data/clip one.mp4", v="error") == _CapturedPopen.args


def test_decode_command_seeks_filters_and_limits():
    cmd = ffmpeg_cli.decode_command("/v/a.mp4", 29.97, (320, 240), 2, time_start=1.5, duration=2.0)
    assert cmd[:5] == ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"]
    # input options before -i, the output's options before the output
    assert cmd.index("-ss") < cmd.index("-i") and cmd.index("-threads") < cmd.index("-i")
    assert cmd[cmd.index("-i") + 1] == "/v/a.mp4"
    graph = cmd[cmd.index("-filter_complex") + 1]
    assert graph.startswith("[0:v:0]fps=fps=29.970000000") and "scale=320:240:flags=area" in graph
    assert cmd.index("-t") > cmd.index("-i") and cmd[-1] == "pipe:1"
    assert cmd[cmd.index("-pix_fmt") + 1] == "rgb24"


def test_decode_command_without_seek_or_scale():
    cmd = ffmpeg_cli.decode_command("/v/a.mp4", 25.0, None, 0)
    assert "-ss" not in cmd and "-t" not in cmd
    assert "scale" not in cmd[cmd.index("-filter_complex") + 1]


@pytest.mark.parametrize("output_seek", [False, True])
def test_one_frame_command_seeks_where_asked(output_seek):
    cmd = ffmpeg_cli.one_frame_command("/v/a.ts", 3.25, output_seek)
    assert (cmd.index("-ss") > cmd.index("-i")) is output_seek
    assert cmd[cmd.index("-ss") + 1] == "3.250000"
    assert cmd[cmd.index("-map") + 1] == "0:v:0" and cmd[cmd.index("-frames:v") + 1] == "1"


def test_commands_run(tmp_path):
    """The built commands run against a real file (ffmpeg is a system dependency of the suite)."""
    clip = tmp_path / "c.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1",
                    "-pix_fmt", "yuv420p", str(clip)], check=True)
    info = json.loads(subprocess.run(ffmpeg_cli.probe_command(str(clip), v="error"), capture_output=True,
                                     check=True).stdout)
    assert info["streams"][0]["width"] == 64
    times = subprocess.run(ffmpeg_cli.packet_times_command(str(clip)), capture_output=True, check=True).stdout.split()
    assert len(times) == 10
    raw = subprocess.run(ffmpeg_cli.decode_command(str(clip), 5.0, (32, 24), 1), capture_output=True, check=True).stdout
    assert len(raw) == 5 * 32 * 24 * 3
    one = subprocess.run(ffmpeg_cli.one_frame_command(str(clip), 0.55, True), capture_output=True, check=True).stdout
    assert len(one) == 64 * 48
