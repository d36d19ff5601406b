"""Pure evaluators the core may run itself: WAIT durations and dates, and a restricted form of
DO_WHILE `loopCondition`.

Conductor's `loopCondition` is JavaScript. Scripts belong in a sandbox outside apply (see
docs/workflow-language.md); until that exists, the core accepts only a small, side-effect-free
subset that it can evaluate deterministically without eval:

    cond    := ifelse | ternary | fn | expr [';']
    fn      := '(' 'function' '(' ')' '{' body '}' ')' '(' ')' [';']
    body    := ifelse | 'if' '(' expr ')' '{' 'return' bool ';'? '}' 'return' bool ';'?
             | 'return' expr ';'?
    ifelse  := 'if' '(' expr ')' '{' [return] bool ';'? '}' 'else' '{' [return] bool ';'? '}'
    ternary := expr '?' bool ':' bool
    expr    := and ('||' and)* ;  and := not ('&&' not)* ;  not := '!' not | cmp
    cmp     := operand [('<'|'<='|'>'|'>='|'=='|'!='|'==='|'!==') operand]
    operand := '$' ('.' ident | '[' string | int ']')* ['.length'] | number | string
             | 'true' | 'false' | 'null' | '(' expr ')'

Anything else is rejected at registration with a clear message.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from . import limits

JSON = Any


class ConditionError(ValueError):
    pass


# ---------------------------------------------------------------- durations and dates

_DURATION = re.compile(
    r"^\s*(?:(\d+)\s*(?:days?|d)\b)?\s*(?:(\d+)\s*(?:hours?|hrs?|h)\b)?\s*"
    r"(?:(\d+)\s*(?:minutes?|mins?|m)\b)?\s*(?:(\d+)\s*(?:seconds?|secs?|s)\b)?\s*$",
    re.IGNORECASE,
)


def parse_duration_ms(text: JSON) -> int:
    """Conductor's WAIT `duration`: "2 days 3 hours 10 minutes 5 seconds", units d/h/m/s."""
    if not isinstance(text, str) or not text.strip():
        raise ConditionError(f"duration {text!r}: expected e.g. '2 minutes 10 seconds'")
    m = _DURATION.match(text)
    if m is None or not any(m.groups()):
        raise ConditionError(
            f"duration {text!r}: expected e.g. '2 days 3 hours 10 minutes 5 seconds'"
        )
    if any(g and len(g) > 12 for g in m.groups()):
        raise ConditionError(f"duration: at most {limits.MAX_WAIT_MS // 86_400_000} days")
    d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    ms = ((d * 24 + h) * 60 + mi) * 60_000 + s * 1000
    if ms > limits.MAX_WAIT_MS:
        raise ConditionError(f"duration: at most {limits.MAX_WAIT_MS // 86_400_000} days")
    return ms


_UNTIL = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})(?:\s+(\d{2}):(\d{2})(?::(\d{2}))?)?(?:\s*(\S+))?\s*$"
)
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def parse_until_ms(text: JSON) -> int:
    """Conductor's WAIT `until`: "yyyy-MM-dd HH:mm[:ss] [zone]" -> epoch ms.

    The zone is UTC/GMT/Z or a numeric offset (+05:30). Without a zone the time is UTC (Conductor
    uses the server's default zone, which would differ between replicas).
    """
    if not isinstance(text, str):
        raise ConditionError(f"until {text!r}: expected 'yyyy-MM-dd HH:mm z'")
    m = _UNTIL.match(text)
    if m is None:
        raise ConditionError(f"until {text!r}: expected 'yyyy-MM-dd HH:mm z'")
    y, mo, d, hh, mm, ss, zone = m.groups()
    tz: timezone = UTC
    if zone and zone.upper() not in ("UTC", "GMT", "Z"):
        om = _OFFSET.match(zone)
        if om is None:
            raise ConditionError(
                f"until {text!r}: zone {zone!r} must be UTC, GMT, Z or an offset like +05:30"
            )
        sign = -1 if om.group(1) == "-" else 1
        if int(om.group(2)) > 23 or int(om.group(3)) > 59:
            raise ConditionError(f"until: zone offset {zone!r} must be within -23:59..+23:59")
        tz = timezone(sign * timedelta(hours=int(om.group(2)), minutes=int(om.group(3))))
    try:
        when = datetime(
            int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0), tzinfo=tz
        )
    except ValueError as exc:
        raise ConditionError(f"until {text!r}: {exc}") from None
    return int(when.timestamp() * 1000)


# ---------------------------------------------------------------- the restricted condition

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>'[^'\\]*'|\"[^\"\\]*\")|(?P<id>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>===|!==|==|!=|<=|>=|&&|\|\||[<>!?:;.\[\](){}$]))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ConditionError(f"unexpected character at {pos}: {text[pos : pos + 10]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.toks[j][1] if j < len(self.toks) else ""

    def take(self, want: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise ConditionError(f"unexpected end, expected {want or 'more'}")
        tok = self.toks[self.i]
        if want is not None and tok[1] != want:
            raise ConditionError(f"expected {want!r}, found {tok[1]!r}")
        self.i += 1
        return tok

    def opt(self, want: str) -> bool:
        if self.peek() == want:
            self.i += 1
            return True
        return False

    def done(self) -> None:
        while self.opt(";"):
            pass
        if self.i != len(self.toks):
            raise ConditionError(f"unexpected {self.peek()!r}")

    # cond
    def cond(self) -> JSON:
        if self.peek() == "(" and self.peek(1) == "function":
            self.take("(")
            self.take("function")
            self.take("(")
            self.take(")")
            self.take("{")
            node = self.body()
            self.take("}")
            self.take(")")
            self.take("(")
            self.take(")")
            self.done()
            return node
        if self.peek() == "if":
            node = self.ifelse()
            self.done()
            return node
        if self.peek() == "return":
            self.take("return")
        e = self.expr()
        if self.opt("?"):
            a = self.boolean()
            self.take(":")
            b = self.boolean()
            e = ["?", e, a, b]
        self.done()
        return e

    def body(self) -> JSON:
        if self.peek() == "if":
            self.take("if")
            self.take("(")
            c = self.expr()
            self.take(")")
            self.take("{")
            self.opt("return")
            a = self.boolean()
            self.opt(";")
            self.take("}")
            if self.opt("else"):
                self.take("{")
                self.opt("return")
                b = self.boolean()
                self.opt(";")
                self.take("}")
            else:
                self.take("return")
                b = self.boolean()
                self.opt(";")
            return ["?", c, a, b]
        self.take("return")
        e = self.expr()
        self.opt(";")
        return e

    def ifelse(self) -> JSON:
        self.take("if")
        self.take("(")
        c = self.expr()
        self.take(")")
        self.take("{")
        self.opt("return")
        a = self.boolean()
        self.opt(";")
        self.take("}")
        self.take("else")
        self.take("{")
        self.opt("return")
        b = self.boolean()
        self.opt(";")
        self.take("}")
        return ["?", c, a, b]

    def boolean(self) -> JSON:
        _, val = self.take()
        if val not in ("true", "false"):
            raise ConditionError(f"expected true or false, found {val!r}")
        return ["lit", val == "true"]

    def expr(self) -> JSON:
        node = self.conj()
        while self.opt("||"):
            node = ["||", node, self.conj()]
        return node

    def conj(self) -> JSON:
        node = self.neg()
        while self.opt("&&"):
            node = ["&&", node, self.neg()]
        return node

    def neg(self) -> JSON:
        if self.opt("!"):
            return ["!", self.neg()]
        return self.cmp()

    def cmp(self) -> JSON:
        left = self.operand()
        if self.peek() in ("<", "<=", ">", ">=", "==", "!=", "===", "!=="):
            op = self.take()[1]
            return [op, left, self.operand()]
        return left

    def operand(self) -> JSON:
        kind, val = self.take()
        if val == "(":
            e = self.expr()
            self.take(")")
            return e
        if kind == "num":
            return ["lit", float(val) if "." in val else int(val)]
        if kind == "str":
            return ["lit", val[1:-1]]
        if val in ("true", "false"):
            return ["lit", val == "true"]
        if val == "null":
            return ["lit", None]
        if val == "$":
            path: list[JSON] = []
            length = False
            while self.peek() in (".", "["):
                if self.opt("."):
                    name = self.take()
                    if name[0] != "id":
                        raise ConditionError(f"expected a name after '.', found {name[1]!r}")
                    if name[1] == "length" and self.peek() not in (".", "["):
                        length = True
                        break
                    path.append(name[1])
                else:
                    self.take("[")
                    k, v = self.take()
                    if k == "str":
                        path.append(v[1:-1])
                    elif k == "num" and "." not in v:
                        path.append(int(v))
                    else:
                        raise ConditionError(f"expected a quoted key or an index, found {v!r}")
                    self.take("]")
            return ["$", path, length]
        raise ConditionError(f"unsupported token {val!r}")


def parse_condition(text: JSON) -> JSON:
    """Parse a restricted loopCondition into a JSON-able tree; raises ConditionError."""
    if not isinstance(text, str) or not text.strip():
        raise ConditionError("empty condition")
    if len(text) > 2000:
        raise ConditionError("condition longer than 2000 characters")
    return _Parser(text).cond()


def _truthy(v: JSON) -> bool:
    return not (v is None or v is False or v == 0 or v == "")


def _num(v: JSON) -> JSON:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str):
        try:
            return float(v) if "." in v else int(v)
        except ValueError:
            return None
    if v is None:
        return None
    return None


def _compare(op: str, a: JSON, b: JSON) -> bool:
    if op in ("===", "!=="):
        same = type(a) is type(b) and a == b
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            same = not isinstance(a, bool) and not isinstance(b, bool) and a == b
        return same if op == "===" else not same
    if op in ("==", "!="):
        if isinstance(a, str) and isinstance(b, str):
            same = a == b
        elif a is None or b is None:
            same = a is None and b is None
        else:
            na, nb = _num(a), _num(b)
            same = na is not None and nb is not None and na == nb
        return same if op == "==" else not same
    if isinstance(a, str) and isinstance(b, str):
        x: JSON = a
        y: JSON = b
    else:
        x, y = _num(a), _num(b)
        if x is None or y is None:  # JS: comparisons with undefined/NaN are false
            return False
    if op == "<":
        return bool(x < y)
    if op == "<=":
        return bool(x <= y)
    if op == ">":
        return bool(x > y)
    return bool(x >= y)


def evaluate(node: JSON, doc: JSON) -> JSON:
    """Evaluate a parsed condition against `$` = doc. Pure; never raises for valid trees."""
    op = node[0]
    if op == "lit":
        return node[1]
    if op == "$":
        cur = doc
        for p in node[1]:
            by_index = isinstance(p, int) and isinstance(cur, list) and 0 <= p < len(cur)
            if by_index or (isinstance(p, str) and isinstance(cur, dict) and p in cur):
                cur = cur[p]
            else:
                return None
        if node[2]:
            return len(cur) if isinstance(cur, (list, str)) else None
        return cur
    if op == "?":
        return evaluate(node[2] if _truthy(evaluate(node[1], doc)) else node[3], doc)
    if op == "!":
        return not _truthy(evaluate(node[1], doc))
    if op == "&&":
        return _truthy(evaluate(node[1], doc)) and _truthy(evaluate(node[2], doc))
    if op == "||":
        return _truthy(evaluate(node[1], doc)) or _truthy(evaluate(node[2], doc))
    return _compare(op, evaluate(node[1], doc), evaluate(node[2], doc))


def condition_true(text: str, doc: JSON) -> bool:
    return _truthy(evaluate(parse_condition(text), doc))
