#!/usr/bin/env python3
"""Generates openapi_facts.json: the facts about Kubernetes API types that the
Rust type schemas (k8s-openapi's `schemars` feature) do not carry.

Facts kept, per definition name (upstream's, e.g. "io.k8s.api.core.v1.PodSpec"):
  "ext":      the type's own x-kubernetes-* extensions
              (x-kubernetes-group-version-kind, x-kubernetes-map-type, ...)
  "required": the required property names, as upstream lists them
  "fields":   per property that has a fact:
                "ref"    the definition the property is
                "items"  the definition each element of the (array) property is
                "values" the definition each value of the (map) property is
                x-kubernetes-patch-strategy, x-kubernetes-patch-merge-key,
                x-kubernetes-list-type, x-kubernetes-list-map-keys,
                x-kubernetes-map-type, ... verbatim
No descriptions, no types: those come from the Rust types.

Source: the `_definitions.json` that the PyPI package kubernetes-validate ships
for each Kubernetes version (a JSON-schema rendering of upstream's OpenAPI v2
definitions). To regenerate:

    pip download --no-deps kubernetes-validate==1.37.0 -d /tmp/kv
    cd /tmp/kv && unzip -q -o kubernetes_validate-*.whl
    python3 gen_openapi_facts.py \
        /tmp/kv/kubernetes_validate/kubernetes-json-schema/v1.33.0-local/_definitions.json \
        > openapi_facts.json
"""
import json
import sys


def ref_name(schema):
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if not ref:
        return None
    return ref.rsplit("/", 1)[-1]


def extensions(schema):
    return {k: v for k, v in sorted(schema.items()) if k.startswith("x-kubernetes-")}


def field_facts(prop):
    facts = {}
    r = ref_name(prop)
    if r is None and isinstance(prop.get("allOf"), list) and len(prop["allOf"]) == 1:
        r = ref_name(prop["allOf"][0])
    if r:
        facts["ref"] = r
    items = prop.get("items")
    if isinstance(items, dict) and ref_name(items):
        facts["items"] = ref_name(items)
    values = prop.get("additionalProperties")
    if isinstance(values, dict) and ref_name(values):
        facts["values"] = ref_name(values)
    facts.update(extensions(prop))
    return facts


def main():
    path = sys.argv[1]
    with open(path) as f:
        doc = json.load(f)
    defs = doc.get("$defs") or doc.get("definitions") or {}
    out = {}
    for name in sorted(defs):
        d = defs[name]
        entry = {}
        ext = extensions(d)
        if ext:
            entry["ext"] = ext
        if d.get("required"):
            entry["required"] = d["required"]
        fields = {}
        for pname, prop in (d.get("properties") or {}).items():
            ff = field_facts(prop)
            if ff:
                fields[pname] = ff
        if fields:
            entry["fields"] = fields
        out[name] = entry
    result = {
        "source": "kubernetes-validate 1.37.0, kubernetes-json-schema/v1.33.0-local/_definitions.json",
        "types": out,
    }
    # One type per line: small, and diffs stay readable.
    sys.stdout.write("{\n")
    sys.stdout.write('"source": %s,\n' % json.dumps(result["source"]))
    sys.stdout.write('"types": {\n')
    names = list(out)
    for i, name in enumerate(names):
        sep = "," if i + 1 < len(names) else ""
        sys.stdout.write("%s: %s%s\n" % (json.dumps(name), json.dumps(out[name], separators=(",", ":")), sep))
    sys.stdout.write("}\n}\n")


if __name__ == "__main__":
    main()
