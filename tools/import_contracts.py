"""A custom import-linter contract: a context is used by others only through its public modules.

DESIGN.md: "A context is used by others only through its public modules (`__init__`, `api.py`,
`events.py`); everything else in it is private." import-linter's own `protected` and `forbidden`
contracts must name modules that already exist; this one holds for modules added later too.
"""

from __future__ import annotations

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class PublicModulesContract(Contract):
    """Options: `contexts` (top-level packages), `public` (module names others may import),
    `root` (composition-root modules that may import anything)."""

    type_name = "public_modules"

    contexts = fields.ListField(subfield=fields.StringField())
    public = fields.ListField(subfield=fields.StringField())
    root = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        contexts = {str(c) for c in self.contexts}  # type: ignore[attr-defined]
        public = {str(p) for p in self.public}  # type: ignore[attr-defined]
        root = tuple(str(r) for r in self.root)  # type: ignore[attr-defined]
        violations: list[dict[str, str]] = []
        for importer in sorted(graph.modules):
            if importer.startswith(root):
                continue
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                owner, _, rest = imported.partition(".")
                if owner not in contexts or importer.split(".")[0] == owner or not rest:
                    continue
                if rest.split(".")[0] not in public:
                    violations.append({"importer": importer, "imported": imported})
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for violation in check.metadata["violations"]:
            output.print_error(
                f"{violation['importer']} imports {violation['imported']}, which is private to its context;"
                " use its api or events module",
                bold=False,
            )
        output.new_line()
