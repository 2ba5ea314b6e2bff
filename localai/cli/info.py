"""`localai info NAME`: what a package holds and where it came from."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("info", parents=parents, help="show a package's manifest",
                       description="Show a package's manifest: artifacts, tokenizer, source and converter.")
    p.add_argument("model", metavar="MODEL", help="store name, package folder or manifest.json")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    from localai.model import resolve
    from localai.units import human_bytes, printable

    package = resolve(args.model)
    m = package.manifest
    if args.json:
        print(json.dumps(m.to_dict(), indent=2))
        return 0
    source = m.source
    origin = (f"{source.get('repo_id')}@{source.get('revision')}" if source.get("kind") == "huggingface"
              else source.get("path", "unknown"))
    lines = [
        ("name", m.name), ("folder", str(package.root)), ("architecture", m.architecture),
        ("context length", str(m.context_length)), ("created", m.created),
        ("source", origin),
        ("converter", _converter(m.converter)),
        ("chat template", "yes" if m.chat_template else "none (a plain fallback is used)"),
        ("reasoning", f"{m.thinking.start} ... {m.thinking.end}" if m.thinking else "no markers"),
        ("tokenizer", ", ".join(f"{k} {m.tokenizer[k]}" for k in ("model", "pre", "size") if k in m.tokenizer)),
    ]
    if m.parameters:
        lines.append(("parameters", _parameters(m.parameters)))
    if m.generation_defaults:
        lines.append(("generation defaults", ", ".join(f"{k}={v}" for k, v in m.generation_defaults.items())))
    if m.graph:
        lines.append(("ONNX graph", f"opset {m.graph.get('opset')}, flavour {m.graph.get('flavor')}, "
                                    f"{len(m.graph.get('inputs', []))} inputs, {len(m.graph.get('outputs', []))} "
                                    "outputs"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {printable(value)}")
    print("artifacts")
    for a in m.artifacts:
        print(printable(f"  {a.path}  {a.format} {a.quant}".rstrip() + f"  {human_bytes(a.bytes)}  sha256 "
                        f"{a.sha256[:16]}..."))
    return 0


def _converter(converter: dict[str, object]) -> str:
    """{"name": "localai", "version": "0.1.0", "gguf": "0.19.0"} -> "localai 0.1.0 (gguf 0.19.0)"."""
    libraries = ", ".join(f"{k} {v}" for k, v in converter.items() if k not in ("name", "version"))
    head = f"{converter.get('name', 'unknown')} {converter.get('version', '')}".strip()
    return head + (f" ({libraries})" if libraries else "")


def _parameters(counts: dict[str, object]) -> str:
    """"3.2B total, 0.6B active per token; 128 routed experts (6 per token) + 1 shared; MTP head"."""
    def count(n: object) -> str:
        value = float(n) if isinstance(n, int | float) else 0.0
        for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
            if value >= scale:
                return f"{value / scale:.1f}{unit}"
        return f"{value:.0f}"

    text = f"{count(counts.get('total'))} total, {count(counts.get('active'))} active per token"
    experts = counts.get("experts")
    if isinstance(experts, dict):
        text += (f"; {experts.get('routed')} routed experts ({experts.get('per_token')} per token)"
                 f" + {experts.get('shared')} shared")
    if counts.get("mtp_layers"):
        text += "; MTP head"
    return text
