#!/usr/bin/env bash
# Packaging check: build the sdist and the wheel, check what they carry, install the wheel into a
# fresh virtual environment whose PATH has no Node.js, and run the quickstart notebook's cells there.
#   bash scripts/check_package.sh          # uses .venv/bin/python to build (bash scripts/install.sh)
# Dependencies come from pip's cache and the local torch wheel where present; nothing is kept.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VPY="$ROOT/.venv/bin/python"
TORCH_PIN="torch==2.13.0"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
step() { echo "==> package: $*"; }

# 1. Build both from the source tree (the bundle is built here, where Node.js is).
step "python -m build --sdist --wheel"
"$VPY" -m build --sdist --wheel --outdir "$tmp/dist" . >"$tmp/build.log" 2>&1 \
    || { tail -40 "$tmp/build.log"; exit 1; }
wheel="$(ls "$tmp"/dist/*.whl)"
sdist="$(ls "$tmp"/dist/*.tar.gz)"
step "built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) kB), $(basename "$sdist")"

# 2. What they carry: the wheel the bundle and the demo model, the sdist the front end's source.
"$VPY" - "$wheel" "$sdist" <<'EOF'
import sys, tarfile, zipfile

wheel, sdist = sys.argv[1:]
names = set(zipfile.ZipFile(wheel).namelist())
need = [
    "patchwidget/static/widget.js",
    "patchwidget/static/widget.css",
    "patchwidget/demo/model/model.safetensors",
    "patchwidget/demo/model/config.json",
    "patchwidget/demo/model/tokenizer.json",
]
missing = [n for n in need if n not in names]
assert not missing, f"the wheel lacks {missing}"
assert not [n for n in names if "node_modules" in n or n.startswith("js/")], "js/ in the wheel"
members = tarfile.open(sdist).getnames()
assert any(m.endswith("/js/src/index.ts") for m in members), "the sdist lacks js/src"
assert not any("node_modules" in m for m in members), "node_modules in the sdist"
print(f"==> package: wheel carries the bundle and the demo model ({len(names)} files)")
EOF

# 3. A fresh environment from the wheel, with a PATH that has no node or npm on it.
python="$(readlink -f "$VPY")"
"$python" -m venv "$tmp/venv"
clean_path="$tmp/venv/bin"
for tool in node npm npx; do
    if PATH="$clean_path" command -v "$tool" >/dev/null; then
        echo "check_package.sh: $tool is on the clean PATH" >&2
        exit 1
    fi
done
step "pip install the wheel into a fresh venv (PATH=$clean_path)"
(cd "$tmp" && env -u PYTHONPATH PATH="$clean_path" HOME="${HOME:-/root}" \
    "$tmp/venv/bin/python" -m pip install --quiet "$TORCH_PIN" "$wheel" >"$tmp/pip.log" 2>&1) \
    || { grep -v "^WARNING: Location" "$tmp/pip.log" | tail -40; exit 1; }

# 4. Import it there, construct the widget, and run the quickstart notebook's code cells in order.
step "running notebooks/quickstart.ipynb's cells with the installed package"
cp notebooks/quickstart.ipynb "$tmp/quickstart.ipynb"
(cd "$tmp" && env -u PYTHONPATH PATH="$clean_path" MPLBACKEND=Agg HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 "$tmp/venv/bin/python" - <<'EOF'
import json
import pathlib
import sys

import patchwidget as pw

where = pathlib.Path(pw.__file__).resolve()
assert where.is_relative_to(pathlib.Path(sys.prefix).resolve()), f"imported {where}, not the wheel"
assert (where.parent / "static" / "widget.js").stat().st_size > 10_000

cells = json.loads(pathlib.Path("quickstart.ipynb").read_text())["cells"]
scope: dict = {}
for cell in cells:
    if cell["cell_type"] == "code":
        lines = "".join(cell["source"]).splitlines()
        exec("\n".join(line for line in lines if not line.lstrip().startswith(("%", "!"))), scope)
w = pw.PatchingWidget(scope["exp"])
data, _ = w._repr_mimebundle_()
assert "application/vnd.jupyter.widget-view+json" in data, data.keys()
print(f"==> package: patchwidget {pw.__version__} from {where.parent}: quickstart ran; {data['text/plain']}")
EOF
)
