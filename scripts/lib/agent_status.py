"""agent_status.py: reading an agent's GET /v1/status from the scripts (standard library only).

Used by scripts/tests/failover_client.py and scripts/bench/failover_helper.py:
  sys.path.insert(0, "<repo>/scripts/lib"); from agent_status import fetch_workload, resolve, fmt

A field PATH is dotted; a segment NAME[SEL] picks from a list by index or by "host"/"name";
camelCase and snake_case spellings of a key both match; fmt gives "-" for null or missing.
"""
import json
import urllib.error
import urllib.parse
import urllib.request

MISSING = object()


# ---------------------------------------------------------------- JSON status

def snake(key):
    return "".join("_" + c.lower() if c.isupper() else c for c in key)


def camel(key):
    parts = key.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def lookup(obj, key):
    if not isinstance(obj, dict):
        return MISSING
    for k in (key, snake(key), camel(key)):
        if k in obj:
            return obj[k]
    return MISSING


def resolve(obj, path):
    """A dotted path; a segment NAME[SEL] picks from a list by index or by "host"/"name"."""
    for seg in path.split("."):
        sel = None
        if seg.endswith("]") and "[" in seg:
            seg, sel = seg[:-1].split("[", 1)
        if seg:
            obj = lookup(obj, seg)
        if sel is not None:
            if isinstance(obj, list):
                if sel.isdigit():
                    obj = obj[int(sel)] if int(sel) < len(obj) else MISSING
                else:
                    obj = next((e for e in obj if isinstance(e, dict)
                                and sel in (e.get("host"), e.get("name"))), MISSING)
            elif isinstance(obj, dict):
                obj = obj.get(sel, MISSING)
            else:
                obj = MISSING
        if obj is MISSING or obj is None:
            return obj
    return obj


def fmt(v):
    if v is MISSING or v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        v = json.dumps(v, separators=(",", ":"), sort_keys=True)
    s = "_".join(str(v).split())
    return s if s else "-"


def get_text(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode("utf-8", "replace")


def get_json(url, timeout=2.0):
    return json.loads(get_text(url, timeout))


def workload_of(doc, name):
    """The workload NAME of a status document (the first one when NAME is None)."""
    ws = lookup(doc, "workloads")
    if name is None:
        return (ws[0] if ws else None) if isinstance(ws, list) else None
    if isinstance(ws, list):
        for w in ws:
            if isinstance(w, dict) and w.get("name") == name:
                return w
        return None
    if isinstance(ws, dict):
        return ws.get(name)
    return None


def fetch_workload(url, name=None, timeout=2.0):
    """(host name, workload object) of one agent; raises when it does not answer."""
    doc = get_json(url.rstrip("/") + "/v1/status", timeout)
    host = lookup(doc, "host")
    if host is MISSING or host is None:
        host = urllib.parse.urlsplit(url).hostname
    return str(host), workload_of(doc, name)
