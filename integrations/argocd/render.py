"""Writes argocd-cm-patch.yaml from the health scripts: `python integrations/argocd/render.py`.

Argo CD reads one health script per group/kind from its `argocd-cm` ConfigMap; Backup,
Restore and RestoreDrill share one script. A test fails when the committed patch differs from
the scripts.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = {
    "lifeboat.dev_Backup": "operation.lua",
    "lifeboat.dev_Restore": "operation.lua",
    "lifeboat.dev_RestoreDrill": "operation.lua",
    "lifeboat.dev_BackupSchedule": "schedule.lua",
    "lifeboat.dev_BackupStore": "store.lua",
}
HEADER = """\
# Argo CD health checks for Lifeboat's kinds. Generated from health/*.lua by render.py.
# Merge into the argocd-cm ConfigMap of your Argo CD (namespace argocd), for example:
#   kubectl -n argocd patch configmap argocd-cm --type merge \\
#     --patch-file integrations/argocd/argocd-cm-patch.yaml
"""


def render() -> str:
    lines = [HEADER, "data:\n"]
    for kind, script in SCRIPTS.items():
        body = (HERE / "health" / script).read_text()
        lines.append(f"  resource.customizations.health.{kind}: |\n")
        lines += [f"    {line}".rstrip() + "\n" for line in body.splitlines()]
    return "".join(lines)


if __name__ == "__main__":
    (HERE / "argocd-cm-patch.yaml").write_text(render())
