"""Validates every LucidService and LucidPhase in rendered manifests against the CRDs'
openAPIV3Schema, strictly: an unknown field fails here (the API server would silently prune
it). The API server itself checks the default render in the end-to-end tests; this covers
renders with other values too, without a cluster.

Usage: validate_custom_resources.py CRDS.yaml MANIFEST.yaml...
"""

import copy
import sys

import jsonschema
import yaml


def strict(schema):
    """The structural schema as JSON Schema, with unknown properties forbidden."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if node.get("x-kubernetes-int-or-string"):
            node.pop("type", None)
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if node.pop("nullable", False) and "type" in node:
            node["type"] = [node["type"], "null"]
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for key in ("properties", "patternProperties"):
            for child in node.get(key, {}).values():
                walk(child)
        for key in ("items", "additionalProperties"):
            walk(node.get(key))
        for key in ("allOf", "anyOf", "oneOf"):
            for child in node.get(key, []):
                walk(child)

    walk(schema)
    # The API server fills these in; a manifest may leave them out.
    schema.get("properties", {}).pop("status", None)
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    schema["properties"]["apiVersion"] = {"type": "string"}
    schema["properties"]["kind"] = {"type": "string"}
    return schema


def main():
    crds, manifests = sys.argv[1], sys.argv[2:]
    schemas = {}
    for crd in yaml.safe_load_all(open(crds)):
        if not crd:
            continue
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            api_version = f"{crd['spec']['group']}/{version['name']}"
            schemas[(api_version, kind)] = strict(version["schema"]["openAPIV3Schema"])
    checked = failed = 0
    for path in manifests:
        for doc in yaml.safe_load_all(open(path)):
            if not doc or (doc.get("apiVersion"), doc.get("kind")) not in schemas:
                continue
            checked += 1
            schema = schemas[(doc["apiVersion"], doc["kind"])]
            validator = jsonschema.Draft7Validator(schema)
            for error in validator.iter_errors(doc):
                failed += 1
                where = "/".join(str(p) for p in error.absolute_path)
                print(f"{path}: {doc['kind']}/{doc['metadata']['name']}: {where}: {error.message}")
    print(f"{checked} custom resources checked, {failed} errors")
    if failed or not checked:
        sys.exit(1)


if __name__ == "__main__":
    main()
