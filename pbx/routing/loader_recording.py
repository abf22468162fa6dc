"""The loader's part for ``recording:`` (which calls are recorded, where
the files go): checks with positions, then the model
(:class:`pbx.recording.policy.RecordingSettings`).

Checks: the extensions, departments, hunt groups and routes it names
exist (a typo would silently leave calls unrecorded, or recorded).
"""

from __future__ import annotations

from typing import Any, Final

from pbx.recording.policy import RecordingMode, RecordingSettings, RouteRecording
from pbx.routing.loader_common import DataPath, Merged, Place, Report, section_of, suggest


def check_recording(plan: Merged, root: Place, report: Report) -> None:
    data = section_of(plan, "recording")
    if not data or not plan.complete:
        return
    routes = plan.data.get("routes")
    route_names = {str(r.get("name")) for r in routes if isinstance(r, dict)} if isinstance(routes, list) else set()
    known = {
        "extensions": (set(section_of(plan, "extensions")), "extension"),
        "departments": (set(section_of(plan, "departments")), "department"),
        "hunt_groups": (set(section_of(plan, "hunt_groups")), "hunt group"),
        "routes": (route_names, "route"),
    }
    for key, (names, what) in known.items():
        entries = data.get(key)
        if not isinstance(entries, dict):
            continue
        for name in entries:
            if str(name) not in names:
                path: DataPath = ("recording", key, name)
                report(plan.key_place(path, root), f"recording {key}: no {what} {name!r}" + suggest(str(name), names))


CHECKS: Final = (check_recording,)


def build_recording(plan: Merged) -> RecordingSettings:
    data = section_of(plan, "recording")
    if not data:
        return RecordingSettings()
    fields: dict[str, Any] = {}
    for key in ("retention_days", "max_megabytes"):
        if key in data:
            fields[key] = int(data[key])
    if "directory" in data:
        fields["directory"] = str(data["directory"])
    if "announce" in data:
        fields["announce"] = data["announce"] is True
    if "default" in data:
        fields["default"] = RecordingMode(data["default"])
    for key in ("extensions", "departments", "hunt_groups"):
        fields[key] = {str(k): RecordingMode(v) for k, v in (data.get(key) or {}).items()}
    fields["routes"] = {
        str(k): RouteRecording(mode=RecordingMode(v["mode"]) if isinstance(v, dict) else RecordingMode(v),
                               announce=v.get("announce") if isinstance(v, dict) else None)
        for k, v in (data.get("routes") or {}).items()
    }
    return RecordingSettings(**fields)
