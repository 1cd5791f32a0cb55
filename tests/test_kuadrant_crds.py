"""Every object the CLI generates validates, in strict mode with the CEL rules judged.

Custom resources are checked against the operators' published CRDs
(`shared/reference/crds/`: Kuadrant, prometheus-operator, grafana-operator)
the way the API server checks them: the structural schema with unknown fields
refused (`kubectl apply --validate=strict`), `x-kubernetes-int-or-string`,
`nullable`, and every `x-kubernetes-validations` CEL rule evaluated with
cel-python (transition rules, which read `oldSelf`, apply only to updates and
are skipped for a create). Kubernetes built-ins (Namespace, ConfigMap,
Deployment, Service) are checked with `kubernetes-validate`'s strict schemas
for Kubernetes 1.30 and 1.37.

The AuthPolicy CRD is not in the reference folder: it is checked against a
structural schema written here from Kuadrant's documented kuadrant.io/v1
AuthPolicy fields (only those we generate; everything else is refused).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml
from celpy.adapter import json_to_cel
from typer.testing import CliRunner

from maas_metrics.cli import app
from tests.conftest import EXAMPLE_CONFIG, ROOT
from tests.test_manifests import CONFIG, KUADRANT_CONFIG, KUADRANT_EXAMPLE

runner = CliRunner()

KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
BUILT_IN = {("v1", "Namespace"), ("v1", "ConfigMap"), ("v1", "Service"), ("apps/v1", "Deployment")}


def crd_dir() -> Path:
    """`shared/reference/crds` beside the repository (or `$MAAS_CRDS_DIR`); a missing one fails."""
    if "MAAS_CRDS_DIR" in os.environ:
        return Path(os.environ["MAAS_CRDS_DIR"])
    for parent in ROOT.parents:
        candidate = parent / "shared" / "reference" / "crds"
        if candidate.is_dir():
            return candidate
    pytest.fail("no shared/reference/crds beside the repository (set MAAS_CRDS_DIR)")


Schema = dict[str, Any]

# --- OpenAPI v3 structural schema -> JSON Schema (draft 4, as OpenAPI 3.0) ----------------------

_COPIED = (
    "type",
    "required",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
)


def strict_json_schema(node: Schema) -> Schema:
    """The JSON Schema of a CRD schema node, refusing unknown fields where the API server would."""
    out: Schema = {k: node[k] for k in _COPIED if k in node}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in node:
        out["properties"] = {k: strict_json_schema(v) for k, v in node["properties"].items()}
    if "items" in node:
        out["items"] = strict_json_schema(node["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            out[key] = [strict_json_schema(s) for s in node[key]]
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        out["additionalProperties"] = strict_json_schema(additional)
    elif additional is not None:
        out["additionalProperties"] = additional
    elif node.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False  # strict: a field the schema does not name is refused
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


# --- CEL rules ---------------------------------------------------------------------------------


def cel_failures(node: Schema, value: Any, path: str) -> Iterator[str]:
    """Every `x-kubernetes-validations` rule that `value` (at `path`) breaks, recursively."""
    for validation in node.get("x-kubernetes-validations", []):
        rule = validation["rule"]
        if re.search(r"\boldSelf\b", rule):
            continue  # a transition rule: only evaluated on update
        environment = celpy.Environment()
        program = environment.program(environment.compile(rule))
        result = program.evaluate({"self": json_to_cel(value)})
        if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            yield f"{path}: {validation.get('message', rule)} ({rule}) -> {result!r}"
    if isinstance(value, dict):
        properties = node.get("properties", {})
        additional = node.get("additionalProperties")
        for key, child in value.items():
            if key in properties:
                yield from cel_failures(properties[key], child, f"{path}.{key}")
            elif isinstance(additional, dict):
                yield from cel_failures(additional, child, f"{path}.{key}")
    elif isinstance(value, list) and "items" in node:
        for index, child in enumerate(value):
            yield from cel_failures(node["items"], child, f"{path}[{index}]")


# --- metadata (ObjectMeta is not in a CRD's schema: the API server checks it itself) ------------

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def metadata_problems(metadata: dict[str, Any]) -> list[str]:
    problems = [f"metadata.{k}: not set by us" for k in metadata if k not in _METADATA_FIELDS]
    name = metadata.get("name", "")
    if not (DNS_SUBDOMAIN.match(name) and len(name) <= 253):
        problems.append(f"metadata.name {name!r} is not a DNS subdomain")
    for key, value in metadata.get("labels", {}).items():
        if not (isinstance(value, str) and LABEL_VALUE.match(value) and len(value) <= 63):
            problems.append(f"metadata.labels.{key}: {value!r} is not a label value")
    return problems


_METADATA_FIELDS = {"name", "namespace", "labels", "annotations"}


# --- the schemas --------------------------------------------------------------------------------

#: Kuadrant's documented kuadrant.io/v1 AuthPolicy, narrowed to what we generate (strict).
_STRING = {"type": "string"}
AUTH_POLICY_SCHEMA: Schema = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "apiVersion": _STRING,
        "kind": _STRING,
        "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "spec": {
            "type": "object",
            "required": ["targetRef"],
            "properties": {
                "targetRef": {
                    "type": "object",
                    "required": ["group", "kind", "name"],
                    "properties": {
                        "group": {**_STRING, "maxLength": 253},
                        "kind": {**_STRING, "maxLength": 63, "minLength": 1},
                        "name": {**_STRING, "maxLength": 253, "minLength": 1},
                    },
                    "x-kubernetes-validations": [
                        {"rule": "self.group == 'gateway.networking.k8s.io'"},
                        {"rule": "self.kind == 'HTTPRoute' || self.kind == 'Gateway'"},
                    ],
                },
                "rules": {
                    "type": "object",
                    "properties": {
                        "authentication": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "properties": {
                                    "apiKey": {
                                        "type": "object",
                                        "required": ["selector"],
                                        "properties": {
                                            "allNamespaces": {"type": "boolean"},
                                            "selector": {
                                                "type": "object",
                                                "properties": {
                                                    "matchLabels": {
                                                        "type": "object",
                                                        "additionalProperties": _STRING,
                                                    }
                                                },
                                            },
                                        },
                                    },
                                    "credentials": {
                                        "type": "object",
                                        "properties": {
                                            "authorizationHeader": {
                                                "type": "object",
                                                "properties": {"prefix": _STRING},
                                            }
                                        },
                                    },
                                },
                            },
                        },
                        "response": {
                            "type": "object",
                            "properties": {
                                "success": {
                                    "type": "object",
                                    "properties": {
                                        "filters": {
                                            "type": "object",
                                            "additionalProperties": {
                                                "type": "object",
                                                "properties": {
                                                    "json": {
                                                        "type": "object",
                                                        "required": ["properties"],
                                                        "properties": {
                                                            "properties": {
                                                                "type": "object",
                                                                "additionalProperties": {
                                                                    "type": "object",
                                                                    "properties": {
                                                                        "selector": _STRING,
                                                                        "expression": _STRING,
                                                                    },
                                                                    "maxProperties": 1,
                                                                    "minProperties": 1,
                                                                },
                                                            }
                                                        },
                                                    }
                                                },
                                            },
                                        }
                                    },
                                }
                            },
                        },
                    },
                },
            },
        },
    },
}


@cache
def crd_schemas() -> dict[tuple[str, str], Schema]:
    """(apiVersion, kind) -> the openAPIV3Schema of every served version in the reference CRDs."""
    schemas: dict[tuple[str, str], Schema] = {("kuadrant.io/v1", "AuthPolicy"): AUTH_POLICY_SCHEMA}
    for path in sorted(crd_dir().glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served", True):
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def problems(obj: dict[str, Any]) -> list[str]:
    """Why the API server would refuse `obj` (empty: it would accept it)."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    if key in BUILT_IN:
        out = []
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                out.append(f"Kubernetes {version}: {error.message} at {list(error.path)}")
        return out
    schema = crd_schemas().get(key)
    if schema is None:
        return [f"no CRD for {key}"]
    json_schema = strict_json_schema(schema)
    json_schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: checked below
    validator = jsonschema.Draft4Validator(json_schema)
    out = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]
    out += metadata_problems(obj.get("metadata", {}))
    if not out:
        out += list(cel_failures(schema, obj, "$"))
    return out


# --- what the CLI generates --------------------------------------------------------------------


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Every object kind the CLI writes, from both example configs and the test configs."""
    folder = tmp_path_factory.mktemp("cfg")
    gateway_cfg, kuadrant_cfg = folder / "gateway.yaml", folder / "kuadrant.yaml"
    gateway_cfg.write_text(yaml.safe_dump(CONFIG))
    kuadrant_cfg.write_text(yaml.safe_dump(KUADRANT_CONFIG))
    upstreams = [
        f"--upstream={m}=http://{m}.llm.svc:8000/v1"
        for m in ("granite-8b", "llama-3-8b", "mistral-7b")
    ]
    out: list[dict[str, Any]] = []
    out += documents(run("manifests", "-c", str(EXAMPLE_CONFIG), "--image", "q/m:1", *upstreams))
    out += documents(
        run("manifests", "-c", str(gateway_cfg), "--image", "q/m:1", "--namespace", "x")
    )
    out += documents(run("manifests", "-c", str(KUADRANT_EXAMPLE)))
    out += documents(run("manifests", "-c", str(kuadrant_cfg), "--no-limitador-monitor"))
    out += documents(run("rules", "-c", str(kuadrant_cfg), "--format", "prometheusrule"))
    for fmt in ("configmap", "grafana-operator"):
        out += documents(run("dashboard", "-c", str(EXAMPLE_CONFIG), "--format", fmt))
    return out


def test_every_generated_object_validates_strictly_with_cel_rules(
    generated: list[dict[str, Any]],
) -> None:
    kinds = {(d["apiVersion"], d["kind"]) for d in generated}
    assert kinds == {
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("v1", "Service"),
        ("apps/v1", "Deployment"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("extensions.kuadrant.io/v1alpha1", "TelemetryPolicy"),
        ("kuadrant.io/v1", "AuthPolicy"),
        ("kuadrant.io/v1", "RateLimitPolicy"),
        ("kuadrant.io/v1alpha1", "TokenRateLimitPolicy"),
        ("grafana.integreatly.org/v1beta1", "GrafanaDashboard"),
    }
    refused = {
        f"{d['kind']} {d['metadata']['name']}": problems(d) for d in generated if problems(d)
    }
    assert refused == {}


# --- the checker refuses what the API server refuses (so the test above can fail) ---------------


def first(generated: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = next(d for d in generated if d["kind"] == kind)
    copy: dict[str, Any] = yaml.safe_load(yaml.safe_dump(found))  # a deep copy to break
    return copy


def test_the_checker_refuses_an_unknown_field_everywhere(generated: list[dict[str, Any]]) -> None:
    for kind in ("TelemetryPolicy", "TokenRateLimitPolicy", "AuthPolicy", "ServiceMonitor"):
        obj = first(generated, kind)
        obj["spec"]["targetRefs" if kind != "ServiceMonitor" else "endpoint"] = []
        assert any("Additional properties are not allowed" in p for p in problems(obj)), kind
    deployment = first(generated, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    assert len(problems(deployment)) == len(KUBERNETES_VERSIONS)


def test_the_checker_judges_the_cel_rules(generated: list[dict[str, Any]]) -> None:
    telemetry = first(generated, "TelemetryPolicy")
    telemetry["spec"]["targetRef"]["kind"] = "HTTPRoute"  # the CRD: only a Gateway
    assert [p for p in problems(telemetry) if "self.kind == 'Gateway'" in p]
    trlp = first(generated, "TokenRateLimitPolicy")
    trlp["spec"]["defaults"] = {"limits": trlp["spec"]["limits"]}  # limits XOR defaults
    assert [p for p in problems(trlp) if "mutually exclusive" in p]
    rlp = first(generated, "RateLimitPolicy")
    rlp["spec"]["targetRef"]["group"] = "networking.k8s.io"
    assert [p for p in problems(rlp) if "Invalid targetRef.group" in p]


def test_the_checker_refuses_a_window_kuadrant_refuses(generated: list[dict[str, Any]]) -> None:
    trlp = first(generated, "TokenRateLimitPolicy")
    rate = next(iter(trlp["spec"]["limits"].values()))["rates"][0]
    rate["window"] = "1d"
    assert [p for p in problems(trlp) if "does not match" in p]
