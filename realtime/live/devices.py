"""Audio devices: lazy ``sounddevice`` import, listing, and choosing an output device. Thread: main.

PortAudio enumerates host APIs once, when it is initialised (``import
sounddevice``); a JACK server started later stays invisible. So nothing
here imports ``sounddevice`` at module level.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

_jack_name_keep: list[Any] = []  # the C string PortAudio keeps a pointer to
open_streams = [0]  # streams open in this process (AudioOutput counts); PortAudio is not re-initialised then


class DeviceError(ValueError):
    """No such output device (the message is one line and lists what is available)."""


def close_stream(owner: Any) -> None:
    """Stop and close ``owner.stream`` (a sounddevice stream; idempotent) and, if ``owner._counted``, count it out
    of :data:`open_streams` (AudioOutput and AudioInput). Thread: the caller's (main), never the callback."""
    try:
        if not owner.stream.closed:
            owner.stream.stop()
    finally:
        if not owner.stream.closed:
            owner.stream.close()
        if owner._counted:
            owner._counted = False
            open_streams[0] -= 1


def import_sounddevice(jack_client_name: str | None = None) -> ModuleType:
    """Import ``sounddevice``; with ``jack_client_name``, name PortAudio's JACK client (re-initialises PortAudio).

    Naming is skipped while a stream is open (the first name stays) and where
    PortAudio has no JACK support.
    """
    import sounddevice as sd

    if jack_client_name and not _jack_name_keep[-1:] == [jack_client_name] and not open_streams[0]:
        try:
            import cffi

            ffi = cffi.FFI()
            ffi.cdef("int PaJack_SetClientName(const char *name);")
            lib = ffi.dlopen(sd._libname)
            cname = ffi.new("char[]", jack_client_name.encode())
            while sd._initialized:
                sd._terminate()
            lib.PaJack_SetClientName(cname)
            _jack_name_keep[:] = [cname, lib, ffi, jack_client_name]
            sd._initialize()
        except (AttributeError, OSError, ImportError):  # no JACK in this PortAudio: keep the default name
            if not sd._initialized:
                sd._initialize()
    return sd


def output_devices() -> list[dict[str, Any]]:
    """Devices with at least one output channel, each with ``index`` and ``hostapi_name``."""
    sd = import_sounddevice()
    apis = sd.query_hostapis()
    out = []
    for d in sd.query_devices():
        if d["max_output_channels"] > 0:
            out.append(dict(d, hostapi_name=apis[d["hostapi"]]["name"]))
    return out


def has_output_device() -> bool:
    return bool(output_devices())


def describe_outputs() -> str:
    """One line: the output devices as ``[index] name (host API)``, or 'none'."""
    devs = output_devices()
    return "; ".join(f"[{d['index']}] {d['name']} ({d['hostapi_name']})" for d in devs) or "none"


def list_devices_text() -> str:
    """Every device, sounddevice-style (``>`` marks the default output, ``<`` the default input); with none,
    one line saying so and why (PortAudio sees a JACK server only if it runs when the program starts)."""
    sd = import_sounddevice()
    text = str(sd.query_devices()).strip()
    if text:
        return text
    apis = ", ".join(a["name"] for a in sd.query_hostapis()) or "none"
    return (f"no audio devices found (PortAudio host APIs: {apis}): no sound card is visible and no JACK "
            f"server is running; start one (e.g. `jackd -d dummy &`) or plug in a device, then run again")


def choose_output_device(spec: str | int | None) -> int | None:
    """Resolve ``spec`` (index, or a case-insensitive name substring; ''/None = default) to a device index.

    Raises :class:`DeviceError` with the available outputs when nothing (or
    more than one device) matches, or when there is no default output.
    """
    devs = output_devices()
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        sd = import_sounddevice()
        default = sd.default.device[1]
        if default is None or default < 0:
            if not devs:
                raise DeviceError("no audio output device (available outputs: none)")
            return int(devs[0]["index"])
        return None
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        idx = int(text)
        if any(d["index"] == idx for d in devs):
            return idx
        raise DeviceError(f"output device {idx}: no such output device (available: {describe_outputs()})")
    hits = [d for d in devs if text.lower() in d["name"].lower()]
    if len(hits) != 1:
        why = "no output device matches" if not hits else "several output devices match"
        raise DeviceError(f"output device {text!r}: {why} (available: {describe_outputs()})")
    return int(hits[0]["index"])


def input_devices() -> list[dict[str, Any]]:
    """Devices with at least one input channel, each with ``index`` and ``hostapi_name`` (issue 40: --input)."""
    sd = import_sounddevice()
    apis = sd.query_hostapis()
    return [dict(d, hostapi_name=apis[d["hostapi"]]["name"]) for d in sd.query_devices() if d["max_input_channels"] > 0]


def choose_input_device(spec: str | int | None) -> int | None:
    """``--input DEVICE`` as sounddevice chooses devices: an index, or a case-insensitive name substring
    (''/'default' = the default input). Raises :class:`DeviceError`, one line naming the device and saying
    how to find devices, when nothing (or more than one input) matches."""
    devs = input_devices()
    listed = "; ".join(f"[{d['index']}] {d['name']} ({d['hostapi_name']})" for d in devs) or "none"
    how = f"available inputs: {listed}; `wavenet-live --list-devices` lists every device"
    text = "" if spec is None else str(spec).strip()
    if text.lower() in ("", "default"):
        sd = import_sounddevice()
        default = sd.default.device[0]
        if default is None or default < 0:
            if not devs:
                raise DeviceError(f"input device: there is no audio input ({how})")
            return int(devs[0]["index"])
        return None
    if text.lstrip("-").isdigit():
        idx = int(text)
        if any(d["index"] == idx for d in devs):
            return idx
        raise DeviceError(f"input device {idx}: no such input device ({how})")
    hits = [d for d in devs if text.lower() in d["name"].lower()]
    if len(hits) != 1:
        why = "no input device matches" if not hits else "several input devices match"
        raise DeviceError(f"input device {text!r}: {why} ({how})")
    return int(hits[0]["index"])
