#!/usr/bin/env python3
"""Checks .runpod/hub.json and .runpod/tests.json (RunPod Hub listing files) against the format in
shared/docs/serving-protocols.md section 1.15 and against this repository: required keys and types,
env inputs well-formed, presets naming declared env keys with values of the declared type, tests
with millisecond timeouts, the GPU pools consistent with the Dockerfile's default CUDA_COMPUTE_CAP
(a CUDA build for cap N runs only on GPUs of cap >= N) and with the 24 GB the model needs, and the
voices the tests name present in voices/.

Usage: scripts/check-runpod-hub.py [REPO_ROOT]     (stdlib only; exit 0 = all checks pass)
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent

CATEGORIES = {"audio", "embedding", "language", "video", "image"}
INPUT_TYPES = {"string", "number", "boolean", "huggingface"}
INPUT_KEYS = {"name", "type", "description", "default", "options", "min", "max", "advanced",
              "trueValue", "falseValue", "required"}
# RunPod GPU pools: (lowest compute capability in the pool, smallest memory in GB).
# Source: docs.runpod.io flash/configuration/gpu-types (pool membership); capabilities are NVIDIA's.
POOLS = {
    "AMPERE_16": (86, 16),    # RTX A4000 (8.6), RTX 4000 Ada, RTX 2000 Ada (8.9)
    "AMPERE_24": (86, 20),    # RTX A4500 (20 GB), RTX A5000, RTX 3090 (8.6)
    "ADA_24": (89, 24),       # L4, RTX 4090 (8.9)
    "ADA_32_PRO": (120, 32),  # RTX 5090 (12.0)
    "AMPERE_48": (86, 48),    # A40, RTX A6000 (8.6)
    "ADA_48_PRO": (89, 48),   # L40, L40S, RTX 6000 Ada (8.9)
    "AMPERE_80": (80, 80),    # A100 80GB PCIe / SXM (8.0)
    "ADA_80_PRO": (90, 80),   # H100 PCIe / SXM / NVL (9.0)
    "HOPPER_141": (90, 141),  # H200 (9.0)
}
# GPU type names a tests.json may use, with their compute capability and memory.
GPU_TYPES = {
    "NVIDIA GeForce RTX 4090": (89, 24),
    "NVIDIA L4": (89, 24),
    "NVIDIA RTX A6000": (86, 48),
    "NVIDIA A40": (86, 48),
    "NVIDIA L40S": (89, 48),
    "NVIDIA RTX 6000 Ada Generation": (89, 48),
    "NVIDIA A100 80GB PCIe": (80, 80),
    "NVIDIA A100-SXM4-80GB": (80, 80),
    "NVIDIA H100 PCIe": (90, 80),
    "NVIDIA H100 80GB HBM3": (90, 80),
    "NVIDIA H200": (90, 141),
}
MIN_GPU_GB = 24  # bf16 weights (~11.5 GB) + KV cache + activations
REQUIRED_ENV = ["MODEL_PATH", "AUDIO_TOKENIZER_PATH", "TOKENIZER_PATH", "VOICE_PROMPTS_PATH",
                "HIGGS_WORKER_CONCURRENCY", "HIGGS_MAX_SEQ_LEN", "BUCKET_ENDPOINT_URL",
                "BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY", "HF_TOKEN"]

passed = 0
failures = []


def check(cond, what):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)
    return cond


def is_str(v, nonempty=True):
    return isinstance(v, str) and (bool(v.strip()) or not nonempty)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def value_fits(typ, v):
    if typ == "number":
        return is_num(v)
    if typ == "boolean":
        return isinstance(v, bool)
    return isinstance(v, str)


def load(name):
    path = ROOT / ".runpod" / name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        check(False, f"{path}: not readable JSON: {e}")
        return None


def dockerfile_compute_cap():
    text = (ROOT / "Dockerfile").read_text()
    m = re.search(r"^ARG CUDA_COMPUTE_CAP=(\d+)\s*$", text, re.M)
    check(m is not None, "Dockerfile: no `ARG CUDA_COMPUTE_CAP=<number>` default")
    return int(m.group(1)) if m else None


def check_hub(hub, cap):
    check(isinstance(hub, dict), "hub.json: top level must be an object")
    if not isinstance(hub, dict):
        return {}
    for key in ("title", "description"):
        check(is_str(hub.get(key)), f"hub.json: `{key}` must be a non-empty string")
    check(hub.get("type") == "serverless", "hub.json: `type` must be \"serverless\"")
    check(hub.get("category") in CATEGORIES, f"hub.json: `category` must be one of {sorted(CATEGORIES)}")
    check(hub.get("category") == "audio", "hub.json: this worker's category is \"audio\"")
    if "iconUrl" in hub:
        check(is_str(hub["iconUrl"]), "hub.json: `iconUrl` must be a string")
    cfg = hub.get("config")
    if not check(isinstance(cfg, dict), "hub.json: `config` must be an object"):
        return {}
    check(cfg.get("runsOn") == "GPU", "hub.json: config.runsOn must be \"GPU\" (GPU, CPU allowed; this worker needs a GPU)")
    if "endpointType" in cfg:
        check(cfg["endpointType"] == "LB", "hub.json: config.endpointType, when present, must be \"LB\"")
        check(False, "hub.json: this worker is a queue worker; do not set config.endpointType")
    check(is_int(cfg.get("containerDiskInGb")) and cfg["containerDiskInGb"] >= 5,
          "hub.json: config.containerDiskInGb must be an integer >= 5 (the image is ~1.1 GB)")
    if "gpuCount" in cfg:
        check(cfg["gpuCount"] == 1, "hub.json: config.gpuCount must be 1 (one model per GPU)")
    cuda = cfg.get("allowedCudaVersions")
    check(isinstance(cuda, list) and cuda and all(is_str(v) and re.fullmatch(r"\d+\.\d+", v) for v in cuda),
          "hub.json: config.allowedCudaVersions must be a non-empty list of \"MAJOR.MINOR\" strings")
    if isinstance(cuda, list):
        check("13.0" in cuda, "hub.json: allowedCudaVersions must include \"13.0\" (the image is CUDA 13.0)")
        check(all(not re.fullmatch(r"\d+\.\d+", str(v)) or int(str(v).split(".")[0]) >= 13 for v in cuda),
              "hub.json: allowedCudaVersions below 13.0 cannot run a CUDA 13 image")
    gpu_ids = cfg.get("gpuIds")
    if check(is_str(gpu_ids), "hub.json: config.gpuIds must be a comma-separated string of pool ids / GPU names"):
        wanted = [g.strip() for g in gpu_ids.split(",") if g.strip() and not g.strip().startswith("-")]
        check(wanted, "hub.json: config.gpuIds selects no GPU")
        for g in wanted:
            if not check(g in POOLS or g in GPU_TYPES, f"hub.json: gpuIds entry {g!r} is not a known pool or GPU type"):
                continue
            pool_cap, gb = POOLS.get(g) or GPU_TYPES[g]
            check(gb >= MIN_GPU_GB, f"hub.json: gpuIds {g} has {gb} GB; the model needs {MIN_GPU_GB} GB")
            if cap is not None:
                check(pool_cap >= cap,
                      f"hub.json: gpuIds {g} includes compute capability {pool_cap / 10:.1f} GPUs but the "
                      f"Dockerfile builds for CUDA_COMPUTE_CAP={cap} (PTX runs only on cap >= {cap})")
    env = cfg.get("env", [])
    inputs = {}
    if check(isinstance(env, list), "hub.json: config.env must be a list"):
        seen = set()
        for i, e in enumerate(env):
            where = f"hub.json: config.env[{i}]"
            if not check(isinstance(e, dict) and is_str(e.get("key")), f"{where}: needs a string `key`"):
                continue
            key = e["key"]
            where = f"hub.json: env {key}"
            check(re.fullmatch(r"[A-Z_][A-Z0-9_]*", key) is not None, f"{where}: key must be an env var name")
            check(key not in seen, f"{where}: declared twice")
            seen.add(key)
            has_value, has_input = "value" in e, "input" in e
            check(has_value != has_input, f"{where}: needs exactly one of `value` (static) or `input`")
            if has_value:
                check(isinstance(e["value"], str), f"{where}: static `value` must be a string")
                continue
            inp = e.get("input")
            if not check(isinstance(inp, dict), f"{where}: `input` must be an object"):
                continue
            check(set(inp) <= INPUT_KEYS, f"{where}: unknown input keys {sorted(set(inp) - INPUT_KEYS)}")
            check(is_str(inp.get("name")), f"{where}: input.name must be a non-empty string")
            check(is_str(inp.get("description")), f"{where}: input.description must be a non-empty string")
            typ = inp.get("type")
            if not check(typ in INPUT_TYPES, f"{where}: input.type must be one of {sorted(INPUT_TYPES)}"):
                continue
            inputs[key] = inp
            if "default" in inp:
                check(value_fits(typ, inp["default"]), f"{where}: default {inp['default']!r} is not a {typ}")
            for b in ("advanced", "required"):
                if b in inp:
                    check(isinstance(inp[b], bool), f"{where}: input.{b} must be a boolean")
            for b in ("trueValue", "falseValue"):
                if b in inp:
                    check(typ == "boolean" and isinstance(inp[b], str), f"{where}: input.{b} is a string, boolean inputs only")
            for b in ("min", "max"):
                if b in inp:
                    check(typ == "number" and is_num(inp[b]), f"{where}: input.{b} is a number, number inputs only")
            if is_num(inp.get("min")) and is_num(inp.get("max")):
                check(inp["min"] <= inp["max"], f"{where}: min > max")
                if is_num(inp.get("default")):
                    check(inp["min"] <= inp["default"] <= inp["max"], f"{where}: default outside [min, max]")
            if "options" in inp:
                opts = inp["options"]
                check(isinstance(opts, list) and opts and all(
                    isinstance(o, dict) and is_str(o.get("label")) and value_fits(typ, o.get("value")) for o in opts),
                    f"{where}: input.options must be a list of {{label, value}} with values of type {typ}")
        for key in REQUIRED_ENV:
            check(key in seen, f"hub.json: env {key} must be declared (docs/deploy-runpod.md lists it)")
    presets = cfg.get("presets", [])
    if check(isinstance(presets, list), "hub.json: config.presets must be a list"):
        names = set()
        for i, p in enumerate(presets):
            where = f"hub.json: presets[{i}]"
            if not check(isinstance(p, dict) and is_str(p.get("name")) and isinstance(p.get("defaults"), dict),
                         f"{where}: needs `name` (string) and `defaults` (object)"):
                continue
            check(p["name"] not in names, f"{where}: duplicate name {p['name']!r}")
            names.add(p["name"])
            for k, v in p["defaults"].items():
                if check(k in inputs, f"{where} ({p['name']}): {k} is not a declared env input"):
                    check(value_fits(inputs[k]["type"], v),
                          f"{where} ({p['name']}): {k}={v!r} is not a {inputs[k]['type']}")
    return {"cuda": cuda if isinstance(cuda, list) else [], "inputs": inputs}


def check_tests(tests, hub_info, cap):
    check(isinstance(tests, dict), "tests.json: top level must be an object")
    if not isinstance(tests, dict):
        return
    items = tests.get("tests")
    if not check(isinstance(items, list) and items, "tests.json: `tests` must be a non-empty list"):
        items = []
    names = set()
    for i, t in enumerate(items):
        where = f"tests.json: tests[{i}]"
        if not check(isinstance(t, dict), f"{where}: must be an object"):
            continue
        check(is_str(t.get("name")) and t.get("name") not in names, f"{where}: needs a unique string `name`")
        names.add(t.get("name"))
        check(isinstance(t.get("input"), dict), f"{where}: `input` must be an object (the job input)")
        timeout = t.get("timeout")
        check(is_int(timeout) and 1000 <= timeout <= 3_600_000,
              f"{where}: `timeout` must be an integer number of milliseconds (1000 .. 3600000)")
        if "description" in t:
            check(is_str(t["description"]), f"{where}: `description` must be a string")
        voice = t.get("input", {}).get("ref_audio") if isinstance(t.get("input"), dict) else None
        if isinstance(voice, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", voice):
            check((ROOT / "voices" / f"{voice}.wav").is_file() and (ROOT / "voices" / f"{voice}.txt").is_file(),
                  f"{where}: voice {voice!r} is not in voices/ (the image's default library)")
    inputs = [t.get("input") for t in items if isinstance(t, dict) and isinstance(t.get("input"), dict)]
    check(any(x.get("health_check") is True for x in inputs), "tests.json: needs a {\"health_check\": true} test")
    check(any(is_str(x.get("transcript")) for x in inputs), "tests.json: needs a generate test (input.transcript)")
    cfg = tests.get("config")
    if not check(isinstance(cfg, dict), "tests.json: `config` must be an object"):
        return
    gpu = cfg.get("gpuTypeId")
    if check(is_str(gpu), "tests.json: config.gpuTypeId must be a GPU type name"):
        if check(gpu in GPU_TYPES, f"tests.json: config.gpuTypeId {gpu!r} is not a known GPU type"):
            gpu_cap, gb = GPU_TYPES[gpu]
            check(gb >= MIN_GPU_GB, f"tests.json: {gpu} has {gb} GB; the model needs {MIN_GPU_GB} GB")
            if cap is not None:
                check(gpu_cap >= cap, f"tests.json: {gpu} (cap {gpu_cap / 10:.1f}) cannot run a CUDA_COMPUTE_CAP={cap} build")
    check(cfg.get("gpuCount") == 1, "tests.json: config.gpuCount must be 1")
    cuda = cfg.get("allowedCudaVersions")
    if check(isinstance(cuda, list) and cuda and all(is_str(v) for v in cuda),
             "tests.json: config.allowedCudaVersions must be a non-empty list of strings"):
        check(set(cuda) <= set(hub_info.get("cuda", [])),
              "tests.json: allowedCudaVersions must be a subset of hub.json's (a mismatch leaves the test waiting)")
    env = cfg.get("env", [])
    if check(isinstance(env, list), "tests.json: config.env must be a list"):
        for i, e in enumerate(env):
            check(isinstance(e, dict) and is_str(e.get("key")) and isinstance(e.get("value"), str),
                  f"tests.json: config.env[{i}] must be {{\"key\": str, \"value\": str}}")
    if "cpuFlavor" in cfg:
        check(is_str(cfg["cpuFlavor"]), "tests.json: config.cpuFlavor must be a string")


def main():
    cap = dockerfile_compute_cap()
    hub = load("hub.json")
    tests = load("tests.json")
    info = check_hub(hub, cap) if hub is not None else {}
    if tests is not None:
        check_tests(tests, info, cap)
    for f in failures:
        print(f"FAIL {f}")
    print(f"runpod hub files: {passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
