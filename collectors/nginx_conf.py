"""Read an nginx upstream file the way nginx 1.22 (open source) reads it.

The syntax is nginx's own (`collectors/nginx_syntax.py`); the checks follow
`ngx_http_upstream_server` and the balancer modules, so a file nginx would refuse is refused
here with its line, and one it accepts parses.

Two shapes of file are accepted:
- an http-context file of `upstream {}` blocks (what `include`-d from inside `http {}` holds;
  other http directives such as `map` or `server {}` may sit beside them and are skipped);
- a whole main configuration, whose upstreams are read from its `http {}` block(s).
`include` is not followed: it is noted, and upstreams in the included file are not seen.
Host names are not resolved (nginx resolves them when it loads the file).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from collectors.nginx_directives import HTTP_MAIN_DIRECTIVES, MAIN_DIRECTIVES
from collectors.nginx_syntax import (
    Statement,
    UpstreamConfError,
    parse_number,
    parse_size,
    parse_time,
    read_statements,
    tokenize,
)

# Balancing methods and the server parameters each leaves allowed (NGX_HTTP_UPSTREAM_* flags).
ROUND_ROBIN = "round_robin"
METHODS_WITHOUT_BACKUP = ("ip_hash", "hash", "random")
# Directives of the upstream block in nginx 1.22 OSS: name -> (fewest, most) arguments.
UPSTREAM_DIRECTIVES = {
    "server": (1, None),
    "least_conn": (0, 0),
    "ip_hash": (0, 0),
    "hash": (1, 2),
    "random": (0, 2),
    "keepalive": (1, 1),
    "keepalive_requests": (1, 1),
    "keepalive_time": (1, 1),
    "keepalive_timeout": (1, 1),
    "zone": (1, 2),
}
PLUS_ONLY_DIRECTIVES = ("sticky", "queue", "ntlm", "state", "resolver", "resolver_timeout")
MAIN_CONTEXT_BLOCKS = ("http", "events")  # either one means a whole nginx.conf
PAGE_SIZE = 4096
MIN_ZONE_BYTES = 8 * PAGE_SIZE  # ngx_http_upstream_zone: "zone is too small" below 8 pages


@dataclass(frozen=True)
class UpstreamServer:
    """One `server` line of an upstream block, with nginx's defaults filled in."""

    address: str  # as written: "10.0.1.11:8080", "[::1]:81", "unix:/run/app.sock"
    host: str
    port: int  # 0 for a unix socket; 80 when none is written
    line: int
    weight: int = 1
    max_fails: int = 1
    fail_timeout_s: int = 10
    max_conns: int = 0  # 0: no limit
    backup: bool = False
    down: bool = False

    @property
    def status(self) -> str:
        """Return the configured state in nginx's own words: "down", "backup", or ""."""
        return " ".join(word for word, on in (("down", self.down), ("backup", self.backup)) if on)


@dataclass(frozen=True)
class UpstreamDirective:
    """A directive of the block other than `server` (least_conn, keepalive, zone, ...)."""

    name: str
    args: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class Upstream:
    """An `upstream name {}` block: its servers, balancing method and other directives."""

    name: str
    line: int
    servers: tuple[UpstreamServer, ...]
    method: str = ROUND_ROBIN
    directives: tuple[UpstreamDirective, ...] = ()
    notes: tuple[str, ...] = ()  # what nginx accepts but warns about or silently ignores


@dataclass(frozen=True)
class UpstreamFile:
    """Everything read from one file."""

    path: str
    context: str  # "http" (a file of upstream blocks) or "main" (a whole nginx.conf)
    upstreams: tuple[Upstream, ...]
    notes: tuple[str, ...] = ()


def _parse_address(text: str) -> tuple[str, int] | str:
    """Return (host, port) of a server address as ngx_parse_url reads it, or the problem."""
    if text.startswith("unix:"):
        return ("unix:" + text[5:], 0) if text[5:] else "no path in the unix socket address"
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return "invalid IPv6 address (no closing ']')"
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return "invalid host"
            port_text = rest[1:]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    if "/" in text or "?" in text:
        return "invalid host (an upstream server takes no scheme or URI)"
    if not host:
        return "no host"
    if ":" in text and not text.startswith("[") and ":" in host:
        return "invalid host (write an IPv6 address in brackets)"
    if port_text or text.endswith(":"):
        port = parse_number(port_text)
        if port is None or not 1 <= port <= 65535:
            return "invalid port"
        return host, port
    return host, 80


# -- upstream blocks ---------------------------------------------------------------------------


def _check_arity(statement: Statement, path: str) -> None:
    fewest, most = UPSTREAM_DIRECTIVES[statement.name]
    count = len(statement.args)
    if fewest <= count and (most is None or count <= most):
        return
    if most is None:
        expected = f"at least {fewest}"
    elif fewest == most:
        expected = str(fewest)
    else:
        expected = f"{fewest} to {most}"
    raise UpstreamConfError(
        path,
        statement.line,
        f'invalid number of arguments in "{statement.name}": {count} given, {expected} expected',
    )


def _parse_server(statement: Statement, method: str, upstream: str, path: str) -> UpstreamServer:
    values: dict[str, int] = {"weight": 1, "max_fails": 1, "fail_timeout": 10, "max_conns": 0}
    backup = down = False
    for arg, arg_line in zip(statement.args[1:], statement.arg_lines[1:], strict=True):
        name, equals, raw = arg.partition("=")
        if arg_line != statement.line and arg in UPSTREAM_DIRECTIVES:
            raise UpstreamConfError(
                path,
                statement.line,
                f'"server {statement.args[0]}" is missing its ";": the "{arg}" on line '
                f"{arg_line} was read as one of its parameters",
            )
        if equals and name in values:
            value = parse_time(raw, seconds=True) if name == "fail_timeout" else parse_number(raw)
            if value is None or (name == "weight" and value == 0):
                hint = {
                    "weight": "a whole number of at least 1",
                    "max_fails": "a whole number (0 turns failure counting off)",
                    "max_conns": "a whole number (0: no limit)",
                    "fail_timeout": "a time in whole seconds such as 10s, 1m or 30 "
                    "(nginx refuses ms here)",
                }[name]
                raise UpstreamConfError(
                    path, statement.line, f'invalid parameter "{arg}": {name} must be {hint}'
                )
            values[name] = value
            continue
        if arg == "backup":
            if method in METHODS_WITHOUT_BACKUP:
                raise UpstreamConfError(
                    path,
                    statement.line,
                    f'the "{method}" balancing method of upstream "{upstream}" does not '
                    'support the "backup" parameter',
                )
            backup = True
            continue
        if arg == "down":
            down = True
            continue
        plus = name in ("slow_start", "drain", "resolve", "service", "route")
        raise UpstreamConfError(
            path,
            statement.line,
            f'invalid parameter "{arg}" of "server {statement.args[0]}"'
            + (" (an NGINX Plus parameter, not in nginx open source 1.22)" if plus else "")
            + "; nginx open source knows weight=, max_fails=, fail_timeout=, max_conns=, "
            "backup and down",
        )
    address = statement.args[0]
    parsed = _parse_address(address)
    if isinstance(parsed, str):
        raise UpstreamConfError(path, statement.line, f'{parsed} in server "{address}"')
    host, port = parsed
    return UpstreamServer(
        address=address,
        host=host,
        port=port,
        line=statement.line,
        weight=values["weight"],
        max_fails=values["max_fails"],
        fail_timeout_s=values["fail_timeout"],
        max_conns=values["max_conns"],
        backup=backup,
        down=down,
    )


def _check_directive(statement: Statement, path: str, seen: set[str]) -> None:
    """Check the arguments of a directive other than `server`, as its module does."""
    name, args = statement.name, statement.args
    if name.startswith("keepalive") and name in seen:
        raise UpstreamConfError(path, statement.line, f'"{name}" is given twice in this block')
    seen.add(name)
    if name == "keepalive":
        number = parse_number(args[0])
        if not number:
            raise UpstreamConfError(
                path,
                statement.line,
                f'invalid value "{args[0]}" in "keepalive": a whole number of at least 1 expected',
            )
    elif name == "keepalive_requests":
        if parse_number(args[0]) is None:
            raise UpstreamConfError(
                path, statement.line, f'invalid value "{args[0]}" in "{name}": a number expected'
            )
    elif name in ("keepalive_time", "keepalive_timeout"):
        if parse_time(args[0], seconds=False) is None:
            raise UpstreamConfError(
                path,
                statement.line,
                f'invalid value "{args[0]}" in "{name}": a time such as 60s, 1m or 500ms expected',
            )
    elif name == "hash":
        if len(args) == 2 and args[1] != "consistent":
            raise UpstreamConfError(
                path,
                statement.line,
                f'invalid parameter "{args[1]}" in "hash": only "consistent" may follow the key',
            )
    elif name == "random":
        if args and args[0] != "two":
            raise UpstreamConfError(
                path, statement.line, f'invalid parameter "{args[0]}" in "random": only "two"'
            )
        if len(args) == 2 and args[1] != "least_conn":
            raise UpstreamConfError(
                path,
                statement.line,
                f'invalid parameter "{args[1]}" in "random two": '
                'only "least_conn" (least_time is NGINX Plus)',
            )
    elif name == "zone":
        if not args[0]:
            raise UpstreamConfError(path, statement.line, 'invalid zone name ""')
        if len(args) == 2:
            size = parse_size(args[1])
            if size is None:
                raise UpstreamConfError(path, statement.line, f'invalid zone size "{args[1]}"')
            if size < MIN_ZONE_BYTES:
                raise UpstreamConfError(
                    path,
                    statement.line,
                    f'zone "{args[0]}" is too small: '
                    f"{size} bytes, nginx needs at least {MIN_ZONE_BYTES}",
                )


def _parse_upstream(statement: Statement, path: str) -> Upstream:
    if statement.block is None:
        raise UpstreamConfError(
            path,
            statement.line,
            f'"upstream" has no opening "{{" (got "{statement.name} {" ".join(statement.args)};")',
        )
    if len(statement.args) != 1:
        raise UpstreamConfError(
            path,
            statement.line,
            f'"upstream" takes exactly one name, got {len(statement.args)} arguments',
        )
    name = statement.args[0]
    method = ROUND_ROBIN
    servers: list[UpstreamServer] = []
    directives: list[UpstreamDirective] = []
    notes: list[str] = []
    seen: set[str] = set()
    for inner in statement.block:
        if inner.name == "include" and inner.block is None:  # nginx allows it anywhere
            notes.append(
                f"line {inner.line}: include {' '.join(inner.args)} is not followed; "
                "servers in it are not read"
            )
            continue
        if inner.name not in UPSTREAM_DIRECTIVES:
            extra = " (NGINX Plus only)" if inner.name in PLUS_ONLY_DIRECTIVES else ""
            raise UpstreamConfError(
                path, inner.line, f'unknown directive "{inner.name}" in upstream "{name}"{extra}'
            )
        if inner.block is not None:
            raise UpstreamConfError(
                path, inner.line, f'"{inner.name}" takes no block: end it with ";"'
            )
        _check_arity(inner, path)
        if inner.name == "server":
            servers.append(_parse_server(inner, method, name, path))
            continue
        _check_directive(inner, path, seen)
        directives.append(UpstreamDirective(inner.name, tuple(inner.args), inner.line))
        if inner.name in ("least_conn", "ip_hash", "hash", "random"):
            if method != ROUND_ROBIN:
                notes.append(
                    f'line {inner.line}: in upstream "{name}", {inner.name} replaces {method} '
                    "(nginx warns: load balancing method redefined)"
                )
            method = inner.name
    if not servers:
        raise UpstreamConfError(
            path, statement.close_line, f'no servers are inside upstream "{name}"'
        )
    # Round robin (and every method built on it) needs at least one primary server.
    if all(server.backup for server in servers):
        raise UpstreamConfError(
            path,
            statement.line,
            f'upstream "{name}" has only backup servers: nginx needs at '
            "least one server without backup",
        )
    first_line: dict[str, int] = {}
    for server in servers:
        if server.address in first_line:
            notes.append(
                f'line {server.line}: in upstream "{name}", server {server.address} is listed '
                f"again (first on line {first_line[server.address]}); nginx balances to both "
                "entries, Quarterdeck shows the first"
            )
        first_line.setdefault(server.address, server.line)
    if method in METHODS_WITHOUT_BACKUP:
        for server in servers:
            if server.backup:
                notes.append(
                    f'line {server.line}: in upstream "{name}", {method} never uses the backup '
                    f"server {server.address} (nginx accepts it only because {method} comes "
                    "after it)"
                )
    return Upstream(name, statement.line, tuple(servers), method, tuple(directives), tuple(notes))


def parse_upstream_text(text: str, path: str = "(text)") -> UpstreamFile:
    """Parse configuration text; raise UpstreamConfError naming the line nginx would refuse."""
    statements = read_statements(tokenize(text, path), path)
    main = next((s for s in statements if s.name in MAIN_CONTEXT_BLOCKS), None)
    notes: list[str] = []
    upstreams: list[Upstream] = []
    if main is not None:
        for statement in statements:
            if statement.name == "upstream":
                raise UpstreamConfError(
                    path,
                    statement.line,
                    f'"upstream" is not allowed at the top of a file '
                    f'that has a "{main.name}" block (line {main.line}): put it inside http {{}}',
                )
            if statement.name not in MAIN_DIRECTIVES:
                raise UpstreamConfError(
                    path,
                    statement.line,
                    f'unknown directive "{statement.name}" at the top of a whole nginx.conf',
                )
        blocks = [s.block or [] for s in statements if s.name == "http"]
        http_statements = [inner for block in blocks for inner in block]
    else:
        http_statements = statements
    seen: dict[str, int] = {}
    for statement in http_statements:
        if statement.name not in HTTP_MAIN_DIRECTIVES:
            hint = ' (did you mean "upstream"?)' if _looks_like_upstream(statement.name) else ""
            raise UpstreamConfError(
                path,
                statement.line,
                f'unknown directive "{statement.name}" in the http context{hint}',
            )
        if statement.name == "upstream":
            upstream = _parse_upstream(statement, path)
            key = upstream.name.lower()  # nginx compares upstream names without case
            if key in seen:
                raise UpstreamConfError(
                    path,
                    upstream.line,
                    f'duplicate upstream "{upstream.name}": first defined on line {seen[key]}',
                )
            seen[key] = upstream.line
            upstreams.append(upstream)
        elif statement.name == "include":
            notes.append(
                f"line {statement.line}: include {' '.join(statement.args)} is not followed; "
                "upstreams in it are not read"
            )
        elif statement.block is not None:
            _refuse_nested_upstreams(statement, path)
    _check_zones(upstreams, path)
    return UpstreamFile(path, "main" if main else "http", tuple(upstreams), tuple(notes))


def _looks_like_upstream(name: str) -> bool:
    """Tell whether an unknown directive is probably a mistyped `upstream`."""
    return difflib.SequenceMatcher(None, name, "upstream").ratio() >= 0.75


def _check_zones(upstreams: list[Upstream], path: str) -> None:
    """Refuse shared zones nginx cannot size: none given anywhere, or two different sizes."""
    sizes: dict[str, tuple[int, int]] = {}  # zone name -> (size, line that gave it)
    unsized: dict[str, int] = {}
    for directive in (d for u in upstreams for d in u.directives if d.name == "zone"):
        name = directive.args[0]
        if len(directive.args) == 1:
            unsized.setdefault(name, directive.line)
            continue
        size = parse_size(directive.args[1]) or 0
        if name in sizes and sizes[name][0] != size:
            raise UpstreamConfError(
                path,
                directive.line,
                f'zone "{name}" is {size} bytes here but {sizes[name][0]} on line '
                f"{sizes[name][1]}: nginx refuses conflicting sizes",
            )
        sizes.setdefault(name, (size, directive.line))
    for name, line in unsized.items():
        if name not in sizes:
            raise UpstreamConfError(
                path,
                line,
                f'zone "{name}" has no size, and no other upstream in this file gives it one '
                "(nginx: zero size shared memory zone)",
            )


def _refuse_nested_upstreams(statement: Statement, path: str) -> None:
    for inner in statement.block or []:
        if inner.name == "upstream":
            raise UpstreamConfError(
                path,
                inner.line,
                f'"upstream" is not allowed inside "{statement.name}": only directly in http {{}}',
            )
        _refuse_nested_upstreams(inner, path)


def parse_upstream_file(path: str | Path) -> UpstreamFile:
    """Read and parse an upstream file; raise OSError if unreadable, UpstreamConfError if bad."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return parse_upstream_text(text, str(path))


__all__ = [
    "Upstream",
    "UpstreamConfError",
    "UpstreamDirective",
    "UpstreamFile",
    "UpstreamServer",
    "parse_size",
    "parse_time",
    "parse_upstream_file",
    "parse_upstream_text",
]
