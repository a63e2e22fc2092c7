"""Read template.yaml into a resolved model of the embedded local stack, and provision it.

template.yaml is the single source of truth (docs/design.md): this module runs the same SAM
transform that `sam deploy` runs (offline: no IAM call, no AWS account), then resolves the
intrinsic functions the local runtime needs (queue URLs, table and bucket names, parameters)
with physical names chosen here, so the handlers see the same environment shape as on AWS.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LOCAL_CODE_BUCKET = "a3s-local-code"
_NO_VALUE = object()  # AWS::NoValue: the key or list item disappears


# ------------------------------------------------------------------ model


@dataclass
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str
    timeout: int
    memory: int
    environment: dict[str, str]
    layers_code_dirs: list[Path] = field(default_factory=list)


@dataclass
class QueueSpec:
    logical_id: str
    name: str
    visibility_timeout: int
    dlq_logical_id: str | None = None
    max_receive_count: int | None = None
    message_retention: int | None = None


@dataclass
class TableSpec:
    logical_id: str
    name: str
    key_schema: list[dict[str, Any]]
    attribute_definitions: list[dict[str, Any]]
    global_secondary_indexes: list[dict[str, Any]]
    ttl_attribute: str | None = None


@dataclass
class SecretSpec:
    logical_id: str
    name: str
    value: str


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass
class EventSource:
    function_id: str
    queue_id: str
    batch_size: int
    report_batch_item_failures: bool
    batching_window: int
    max_concurrency: int | None = None  # ScalingConfig.MaximumConcurrency: invocations at once


@dataclass
class AsyncInvokeConfig:
    """A function's EventInvokeConfig: how Lambda treats an asynchronous invocation of it."""

    retries: int = 2                     # MaximumRetryAttempts after a failed attempt
    max_age_s: int = 21_600              # MaximumEventAgeInSeconds
    on_failure_queue_id: str | None = None  # DestinationConfig.OnFailure, when it is a queue here


@dataclass
class Route:
    """One HTTP API route; load_stack lists greedy ({proxy+}) paths last, so first match wins."""

    method: str
    path: str
    function_id: str
    authorized: bool


@dataclass
class WsRoute:
    """One WebSocket API route: its key ($connect, subscribe, ...), function and authorizer (if any)."""

    key: str
    function_id: str
    authorizer_function_id: str | None = None


@dataclass
class StackModel:
    parameters: dict[str, str]
    functions: dict[str, FunctionSpec]
    queues: dict[str, QueueSpec]
    tables: dict[str, TableSpec]
    buckets: dict[str, str]
    event_sources: list[EventSource]
    routes: list[Route]
    authorizer_function_id: str | None
    schedules: list[tuple[str, int]]
    conditions: dict[str, bool]
    secrets: dict[str, SecretSpec] = field(default_factory=dict)
    policies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # each function's IAM statements
    authorizer_ttl: int = 0  # seconds API Gateway caches the authorizer's answer per identity
    ws_routes: list[WsRoute] = field(default_factory=list)  # the WebSocket API's routes
    function_names: dict[str, str] = field(default_factory=dict)  # physical name -> logical id
    async_configs: dict[str, AsyncInvokeConfig] = field(default_factory=dict)  # by function
    region: str = "us-east-1"
    account: str = "123456789012"
    transformed: dict[str, Any] = field(default_factory=dict, repr=False)  # the CloudFormation SAM produced


# ------------------------------------------------------------------ YAML with CloudFormation tags


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that maps !Ref, !GetAtt, !Sub... to their long (JSON) form."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref" or suffix == "Condition":
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)
# CloudFormation keeps dates such as AWSTemplateFormatVersion as strings.
_CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_template(template_path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML (or JSON) template, short-form tags included."""
    with open(template_path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass


# ------------------------------------------------------------------ SAM transform


def sam_transform(template: dict[str, Any], parameters: dict[str, str], region: str = "us-east-1") -> dict[str, Any]:
    """Run aws-sam-translator offline, as `samtranslator.translator.transform.transform` does.

    The Translator is built directly so that the region comes from an explicit boto3 Session (no
    environment needed), and the managed-policy map is empty: the template names no bare managed
    policies, so nothing needs the IAM ListPolicies call the stock ManagedPolicyLoader makes.
    """
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator
    from samtranslator.utils.py27hash_fix import to_py27_compatible_template, undo_mark_unicode_str_in_template

    fragment, values = copy.deepcopy(template), dict(parameters)
    to_py27_compatible_template(fragment, values)  # keeps generated logical ids identical to sam deploy's
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    out = translator.translate(fragment, parameter_values=values, get_managed_policy_map=dict)
    return undo_mark_unicode_str_in_template(out)


def _localise_code(template: dict[str, Any], base: Path) -> dict[str, Path]:
    """Point every local CodeUri/ContentUri at a dummy S3 object; return S3 key -> local dir."""
    code: dict[str, Path] = {}

    def swap(props: dict[str, Any]) -> None:
        for key in ("CodeUri", "ContentUri"):
            uri = props.get(key)
            if isinstance(uri, str) and not uri.startswith("s3://"):
                s3_key = Path(uri).as_posix().lstrip("/")
                code[s3_key] = (base / uri).resolve()
                props[key] = f"s3://{LOCAL_CODE_BUCKET}/{s3_key}"

    swap(template.get("Globals", {}).get("Function", {}))
    for res in template.get("Resources", {}).values():
        if res.get("Type") in ("AWS::Serverless::Function", "AWS::Serverless::LayerVersion"):
            swap(res.setdefault("Properties", {}))
    return code


# ------------------------------------------------------------------ intrinsic functions


def _str(value: Any) -> str:
    """CloudFormation's string form of a scalar (booleans are lower-case)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _target_id(expr: Any) -> str | None:
    """Logical id named by {Ref: X} or {Fn::GetAtt: [X, attr]}, without resolving it."""
    if isinstance(expr, dict) and "Ref" in expr:
        return str(expr["Ref"])
    if isinstance(expr, dict) and "Fn::GetAtt" in expr:
        arg = expr["Fn::GetAtt"]
        return str(arg[0] if isinstance(arg, list) else arg.split(".", 1)[0])
    return None


_NAME_PROPS = {
    "AWS::SQS::Queue": "QueueName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::IAM::Role": "RoleName",
    "AWS::SecretsManager::Secret": "Name",
}


class _Resolver:
    """Evaluates conditions and intrinsic functions against parameters and local physical names."""

    def __init__(self, template: dict[str, Any], params: dict[str, str], region: str, account: str) -> None:
        self.template, self.params, self.region, self.account = template, params, region, account
        self.resources: dict[str, Any] = template.get("Resources", {})
        gov = "aws-us-gov" if region.startswith("us-gov-") else "aws"
        self.partition = "aws-cn" if region.startswith("cn-") else gov
        self.pseudo: dict[str, Any] = {
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com",
            "AWS::StackName": "a3s-local",
            "AWS::StackId": f"arn:{self.partition}:cloudformation:{region}:{account}:stack/a3s-local/local",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": _NO_VALUE,
        }
        self._conditions: dict[str, bool] = {}

    # conditions
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = self.truth(self.template["Conditions"][name])
        return self._conditions[name]

    def enabled(self, resource: dict[str, Any]) -> bool:
        return "Condition" not in resource or self.condition(resource["Condition"])

    def truth(self, expr: Any) -> bool:
        if isinstance(expr, bool):
            return expr
        (key, arg), = expr.items()
        if key == "Fn::Equals":
            return _str(self.resolve(arg[0])) == _str(self.resolve(arg[1]))
        if key == "Fn::Not":
            return not self.truth(arg[0])
        if key == "Fn::And":
            return all(self.truth(a) for a in arg)
        if key == "Fn::Or":
            return any(self.truth(a) for a in arg)
        if key == "Condition":
            return self.condition(arg)
        raise ValueError(f"unsupported condition function {key}")

    # names
    def name(self, lid: str) -> str:
        res = self.resources[lid]
        explicit = res.get("Properties", {}).get(_NAME_PROPS.get(res["Type"], ""))
        if explicit is not None:
            return _str(self.resolve(explicit))
        # S3 bucket names must be lower-case; the rest keep the logical id for readable logs.
        return f"a3s-{lid}".lower() if res["Type"] == "AWS::S3::Bucket" else f"a3s-{lid}"

    def queue_url(self, name: str) -> str:
        return f"https://sqs.{self.region}.amazonaws.com/{self.account}/{name}"  # moto's format too

    def ref(self, name: str) -> Any:
        if name in self.params:
            return self.params[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if name not in self.resources:
            raise ValueError(f"Ref to unknown name {name}")
        rtype = self.resources[name]["Type"]
        if rtype == "AWS::SQS::Queue":
            return self.queue_url(self.name(name))
        if rtype == "AWS::Lambda::LayerVersion":
            return f"arn:{self.partition}:lambda:{self.region}:{self.account}:layer:{self.name(name)}:1"
        if rtype == "AWS::SecretsManager::Secret":
            # A partial ARN (AWS adds a random suffix): Secrets Manager, and moto, accept it.
            return f"arn:{self.partition}:secretsmanager:{self.region}:{self.account}:secret:{self.name(name)}"
        return self.name(name)

    def get_att(self, lid: str, attr: str) -> str:
        rtype, n = self.resources[lid]["Type"], self.name(lid)
        p, r, a = self.partition, self.region, self.account
        arns = {
            "AWS::SQS::Queue": f"arn:{p}:sqs:{r}:{a}:{n}",
            "AWS::DynamoDB::Table": f"arn:{p}:dynamodb:{r}:{a}:table/{n}",
            "AWS::S3::Bucket": f"arn:{p}:s3:::{n}",
            "AWS::Lambda::Function": f"arn:{p}:lambda:{r}:{a}:function:{n}",
            "AWS::IAM::Role": f"arn:{p}:iam::{a}:role/{n}",
            "AWS::Logs::LogGroup": f"arn:{p}:logs:{r}:{a}:log-group:{n}:*",
        }
        if attr == "Arn" and rtype in arns:
            return arns[rtype]
        if rtype == "AWS::SQS::Queue" and attr == "QueueName":
            return n
        if rtype == "AWS::SQS::Queue" and attr == "QueueUrl":
            return self.queue_url(n)
        raise ValueError(f"Fn::GetAtt {lid}.{attr} cannot be resolved locally")

    # values
    def sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.startswith("!"):  # ${!Literal} escapes a literal ${Literal}
                return "${" + name[1:] + "}"
            if name in variables:
                return _str(self.resolve(variables[name]))
            if "." in name and name not in self.pseudo:
                return self.get_att(*name.split(".", 1))
            return _str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in map(self.resolve, value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                lid, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(lid, attr)
            if key == "Fn::Sub":
                return self.sub(arg)
            if key == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Join":
                return arg[0].join(_str(v) for v in self.resolve(arg[1]))
            if key == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
            if key == "Fn::Split":
                return _str(self.resolve(arg[1])).split(arg[0])
            if key == "Fn::FindInMap":
                m, k1, k2 = (self.resolve(a) for a in arg)
                return self.template["Mappings"][m][k1][k2]
            if key in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"):
                return self.truth(value)
            if key.startswith("Fn::"):
                raise ValueError(f"{key} is not supported by the local stack")
        return {k: v for k, v in ((k, self.resolve(x)) for k, x in value.items()) if v is not _NO_VALUE}


# ------------------------------------------------------------------ load_stack


def _parameters(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
    declared: dict[str, Any] = template.get("Parameters", {})
    unknown = set(overrides) - set(declared)
    if unknown:
        raise ValueError(f"unknown template parameters: {sorted(unknown)}")
    values: dict[str, str] = {}
    for name, spec in declared.items():
        raw = overrides.get(name, spec.get("Default"))
        if raw is None:
            raise ValueError(f"template parameter {name} has no default and no value")
        value = _str(raw)
        allowed = [_str(a) for a in spec.get("AllowedValues", [])]
        if allowed and value not in allowed:
            raise ValueError(f"parameter {name}={value!r} is not one of {allowed}")
        if spec.get("Type") == "Number":
            float(value)  # fail here, not deep inside a handler
        values[name] = value
    return values


def _rate_seconds(expression: str) -> int | None:
    """rate(N unit) in seconds; cron() schedules have no fixed period and are not pumped locally."""
    m = re.fullmatch(r"rate\((\d+)\s+(second|minute|hour|day)s?\)", expression.strip())
    if not m:
        return None
    return int(m.group(1)) * {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[m.group(2)]


def _uri_function(uri: Any) -> str | None:
    """Function logical id in an API Gateway Lambda integration/authorizer URI (an Fn::Sub)."""
    sub = uri.get("Fn::Sub") if isinstance(uri, dict) else None
    variables: dict[str, Any] = {}
    if isinstance(sub, str):
        text = sub
    else:  # [text, {name: value}]
        text, variables = sub or ["", {}]
    m = re.search(r"functions/\$\{([^}]+)\}/invocations", text)
    if not m:
        return None
    name = m.group(1)
    return _target_id(variables[name]) if name in variables else name.split(".", 1)[0]


def load_stack(
    template_path: Path,
    parameter_overrides: dict[str, str] | None = None,
    region: str = "us-east-1",
    account: str = "123456789012",
) -> StackModel:
    """Transform template.yaml with SAM and resolve what the local stack needs to run it."""
    template_path = Path(template_path).resolve()
    source = read_template(template_path)
    params = _parameters(source, parameter_overrides or {})
    code_dirs = _localise_code(source, template_path.parent)
    cfn = sam_transform(source, params, region)
    r = _Resolver(cfn, params, region, account)
    live = {lid: res for lid, res in cfn["Resources"].items() if r.enabled(res)}

    def of_type(rtype: str) -> dict[str, dict[str, Any]]:
        return {lid: res.get("Properties", {}) for lid, res in live.items() if res["Type"] == rtype}

    def function_id(expr: Any) -> str | None:
        lid = _target_id(expr)  # follow aliases/versions (AutoPublishAlias) to the function
        while lid in live and live[lid]["Type"] in ("AWS::Lambda::Alias", "AWS::Lambda::Version"):
            lid = _target_id(live[lid]["Properties"]["FunctionName"])
        return lid

    layer_dirs = {
        lid: code_dirs[props["Content"]["S3Key"]]
        for lid, props in of_type("AWS::Lambda::LayerVersion").items()
        if props.get("Content", {}).get("S3Bucket") == LOCAL_CODE_BUCKET
    }
    functions: dict[str, FunctionSpec] = {}
    policies: dict[str, list[dict[str, Any]]] = {}
    for lid, props in of_type("AWS::Lambda::Function").items():
        role = live.get(_target_id(props.get("Role")) or "", {})
        documents = r.resolve(role.get("Properties", {}).get("Policies", []))
        policies[lid] = [st for doc in documents for st in doc["PolicyDocument"]["Statement"]]
        code = props.get("Code", {})
        if code.get("S3Bucket") != LOCAL_CODE_BUCKET:
            raise ValueError(f"function {lid} has no local CodeUri, so it cannot run locally")
        env = r.resolve(props.get("Environment", {}).get("Variables", {}))
        functions[lid] = FunctionSpec(
            logical_id=lid,
            code_dir=code_dirs[code["S3Key"]],
            handler=props["Handler"],
            timeout=int(r.resolve(props.get("Timeout", 3))),
            memory=int(r.resolve(props.get("MemorySize", 128))),
            environment={k: _str(v) for k, v in env.items()},
            # Layers given as ARNs (not built from this template) cannot be mounted locally.
            layers_code_dirs=[layer_dirs[t] for t in map(_target_id, props.get("Layers", [])) if t in layer_dirs],
        )

    queues: dict[str, QueueSpec] = {}
    for lid, props in of_type("AWS::SQS::Queue").items():
        redrive = props.get("RedrivePolicy")
        redrive = json.loads(redrive) if isinstance(redrive, str) else redrive
        dlq = _target_id(redrive["deadLetterTargetArn"]) if redrive else None
        if redrive and dlq not in live:
            raise ValueError(f"queue {lid}: the dead-letter queue must be a queue of this template")
        retention = r.resolve(props.get("MessageRetentionPeriod"))
        queues[lid] = QueueSpec(
            logical_id=lid,
            name=r.name(lid),
            visibility_timeout=int(r.resolve(props.get("VisibilityTimeout", 30))),
            dlq_logical_id=dlq,
            max_receive_count=int(r.resolve(redrive["maxReceiveCount"])) if redrive else None,
            message_retention=None if retention is None else int(retention),
        )

    tables: dict[str, TableSpec] = {}
    for lid, props in of_type("AWS::DynamoDB::Table").items():
        ttl = r.resolve(props.get("TimeToLiveSpecification") or {})
        tables[lid] = TableSpec(
            logical_id=lid,
            name=r.name(lid),
            key_schema=r.resolve(props["KeySchema"]),
            attribute_definitions=r.resolve(props.get("AttributeDefinitions", [])),
            global_secondary_indexes=r.resolve(props.get("GlobalSecondaryIndexes", [])),
            ttl_attribute=ttl.get("AttributeName") if _str(ttl.get("Enabled", False)) == "true" else None,
        )

    event_sources: list[EventSource] = []
    for props in of_type("AWS::Lambda::EventSourceMapping").values():
        queue_id, fn = _target_id(props.get("EventSourceArn")), function_id(props.get("FunctionName"))
        # Only SQS sources have a local pump; a disabled mapping delivers nothing on AWS either.
        enabled = _str(r.resolve(props.get("Enabled", True))) == "true"
        if queue_id is None or fn is None or queue_id not in queues or fn not in functions or not enabled:
            continue
        event_sources.append(
            EventSource(
                function_id=fn,
                queue_id=queue_id,
                batch_size=int(r.resolve(props.get("BatchSize", 10))),
                report_batch_item_failures="ReportBatchItemFailures"
                in r.resolve(props.get("FunctionResponseTypes", [])),
                batching_window=int(r.resolve(props.get("MaximumBatchingWindowInSeconds", 0))),
                max_concurrency=_int_or_none(r.resolve((props.get("ScalingConfig") or {}).get("MaximumConcurrency"))),
            )
        )

    async_configs: dict[str, AsyncInvokeConfig] = {}
    for props in of_type("AWS::Lambda::EventInvokeConfig").values():
        fn = function_id(props.get("FunctionName"))
        if fn in functions:
            on_failure = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
            async_configs[fn] = AsyncInvokeConfig(
                retries=int(r.resolve(props.get("MaximumRetryAttempts", 2))),
                max_age_s=int(r.resolve(props.get("MaximumEventAgeInSeconds", 21_600))),
                on_failure_queue_id=q if (q := _target_id(on_failure)) in queues else None)

    routes: list[Route] = []
    authorizer: str | None = None
    authorizer_ttl = 0
    for props in of_type("AWS::ApiGatewayV2::Api").values():
        body = props.get("Body") or {}
        for scheme in body.get("components", {}).get("securitySchemes", {}).values():
            if "x-amazon-apigateway-authorizer" in scheme and authorizer is None:
                spec = scheme["x-amazon-apigateway-authorizer"]
                authorizer = _uri_function(spec.get("authorizerUri"))
                authorizer_ttl = int(r.resolve(spec.get("authorizerResultTtlInSeconds", 0)))
        for path, ops in body.get("paths", {}).items():
            for method, op in ops.items():
                if not isinstance(op, dict):  # path-level "parameters"
                    continue
                fn = _uri_function(op.get("x-amazon-apigateway-integration", {}).get("uri"))
                if fn is None or fn not in functions:
                    continue  # not a Lambda proxy integration of this template
                security = op.get("security", body.get("security", []))
                routes.append(
                    Route(
                        method="ANY" if method == "x-amazon-apigateway-any-method" else method.upper(),
                        path=path,
                        function_id=fn,
                        authorized=any(name != "NONE" for req in security for name in req),
                    )
                )

    ws_routes: list[WsRoute] = []
    integrations = {lid: _uri_function(p.get("IntegrationUri"))
                    for lid, p in of_type("AWS::ApiGatewayV2::Integration").items()}
    ws_authorizers = {lid: _uri_function(p.get("AuthorizerUri"))
                      for lid, p in of_type("AWS::ApiGatewayV2::Authorizer").items()}
    for props in of_type("AWS::ApiGatewayV2::Route").values():
        target = props.get("Target")
        text = target.get("Fn::Sub", "") if isinstance(target, dict) else str(target or "")
        m = re.search(r"integrations/\$\{([^}]+)\}", text if isinstance(text, str) else "")
        fn = integrations.get(m.group(1)) if m else None
        if fn is None or fn not in functions:
            continue
        ws_auth = ws_authorizers.get(_target_id(props.get("AuthorizerId")) or "")
        ws_routes.append(WsRoute(key=props["RouteKey"], function_id=fn, authorizer_function_id=ws_auth))

    # API Gateway picks the most specific route; keep greedy paths last so a first-match router agrees.
    routes.sort(key=lambda rt: ("+}" in rt.path, -rt.path.count("/"), rt.path))

    schedules: list[tuple[str, int]] = []
    rules = [(p, p.get("Targets", [])) for p in of_type("AWS::Events::Rule").values()]
    rules += [(p, [p.get("Target", {})]) for p in of_type("AWS::Scheduler::Schedule").values()]
    for props, targets in rules:
        rate = _rate_seconds(_str(r.resolve(props.get("ScheduleExpression", ""))))
        if rate is None or r.resolve(props.get("State", "ENABLED")) != "ENABLED":
            continue
        schedules += [(fn, rate) for fn in (function_id(t.get("Arn")) for t in targets) if fn in functions]

    return StackModel(
        parameters=params,
        functions=functions,
        queues=queues,
        tables=tables,
        buckets={lid: r.name(lid) for lid in of_type("AWS::S3::Bucket")},
        secrets={lid: SecretSpec(lid, r.name(lid), _str(r.resolve(props.get("SecretString", ""))))
                 for lid, props in of_type("AWS::SecretsManager::Secret").items()},
        policies=policies,
        event_sources=event_sources,
        routes=routes,
        authorizer_function_id=authorizer,
        authorizer_ttl=authorizer_ttl,
        ws_routes=ws_routes,
        function_names={r.name(lid): lid for lid in functions},
        async_configs=async_configs,
        schedules=schedules,
        conditions={name: r.condition(name) for name in cfn.get("Conditions", {})},
        region=region,
        account=account,
        transformed=cfn,
    )


# ------------------------------------------------------------------ provision


def provision(model: StackModel, *, sqs: Any, dynamodb: Any, s3: Any, secretsmanager: Any = None) -> None:
    """Create (idempotently) the model's queues, tables, buckets and secrets with the given boto3 clients."""
    arns: dict[str, str] = {}
    pending = dict(model.queues)
    while pending:  # DLQs first: a RedrivePolicy needs its DLQ's ARN
        ready = [q for q in pending.values() if q.dlq_logical_id is None or q.dlq_logical_id in arns]
        if not ready:
            raise ValueError(f"dead-letter queues form a cycle or are missing: {sorted(pending)}")
        for q in ready:
            # Create bare, then set attributes: CreateQueue with attributes fails on an existing
            # queue whose attributes differ, which would break re-provisioning after an edit.
            url = sqs.create_queue(QueueName=q.name)["QueueUrl"]
            attrs = {"VisibilityTimeout": str(q.visibility_timeout)}
            if q.message_retention is not None:
                attrs["MessageRetentionPeriod"] = str(q.message_retention)
            if q.dlq_logical_id is not None:
                redrive = {"deadLetterTargetArn": arns[q.dlq_logical_id], "maxReceiveCount": q.max_receive_count}
                attrs["RedrivePolicy"] = json.dumps(redrive)
            sqs.set_queue_attributes(QueueUrl=url, Attributes=attrs)
            got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            arns[q.logical_id] = got["Attributes"]["QueueArn"]
            del pending[q.logical_id]

    for t in model.tables.values():
        try:
            dynamodb.describe_table(TableName=t.name)
        except dynamodb.exceptions.ResourceNotFoundException:
            kwargs: dict[str, Any] = {
                "TableName": t.name,
                "KeySchema": t.key_schema,
                "AttributeDefinitions": t.attribute_definitions,
                "BillingMode": "PAY_PER_REQUEST",  # capacity means nothing locally
            }
            if t.global_secondary_indexes:
                keep = ("IndexName", "KeySchema", "Projection")  # drop CloudFormation-only/capacity keys
                gsis = [{k: g[k] for k in keep if k in g} for g in t.global_secondary_indexes]
                kwargs["GlobalSecondaryIndexes"] = gsis
            dynamodb.create_table(**kwargs)
            dynamodb.get_waiter("table_exists").wait(TableName=t.name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        if t.ttl_attribute:
            ttl = dynamodb.describe_time_to_live(TableName=t.name)["TimeToLiveDescription"]
            if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):  # enabling twice is an error
                spec = {"Enabled": True, "AttributeName": t.ttl_attribute}
                dynamodb.update_time_to_live(TableName=t.name, TimeToLiveSpecification=spec)

    region = s3.meta.region_name
    for name in model.buckets.values():
        kwargs = {"Bucket": name}
        if region and region != "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(**kwargs)

    if model.secrets and secretsmanager is None:
        raise ValueError(f"the stack has secrets ({sorted(model.secrets)}): pass a secretsmanager client")
    for secret in model.secrets.values():
        try:
            secretsmanager.put_secret_value(SecretId=secret.name, SecretString=secret.value)
        except secretsmanager.exceptions.ResourceNotFoundException:
            secretsmanager.create_secret(Name=secret.name, SecretString=secret.value)
