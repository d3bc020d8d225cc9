// GitHub Actions expression language (`${{ ... }}`) for tests/action/runner.mjs.
//
// Follows the runner's evaluator (actions/runner, src/Sdk/DTExpressions2):
//   literals   null true false, numbers (decimal, exponent, 0x.., 0o..), 'strings' ('' escapes ')
//   operators  ( ) [ ] . ! < <= > >= == != && ||   (that precedence, high to low)
//   equality   loose: values of different kinds are coerced to numbers (null 0, bool 0/1,
//              string parsed, '' 0, bad NaN); strings compare case-insensitively;
//              objects/arrays only equal to themselves; NaN equals nothing
//   && ||      return one of their operands (not a boolean), like JavaScript
//   truthiness null, false, 0, NaN and '' are falsy; everything else (objects too) truthy
//   strings    null -> '', booleans 'true'/'false', numbers like .NET "G15", objects 'Object',
//              arrays 'Array'
//   functions  contains startsWith endsWith format join toJSON fromJSON hashFiles
//              always success failure cancelled (names case-insensitive)
//   names      context and property names are case-insensitive (except inside `env`)
//
// Unlike GitHub, a context, function or property this emulator does not know is an
// error, never a silent null: see `strict()` below.

export class ExprError extends Error {}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

const META = new WeakMap(); // object -> { name, caseSensitive, known: Set|null, absent: Set|null }

// Marks `obj` as a context dictionary named `name` (for messages).
//   known:  if given, a property outside `known` is an error (names lower-cased)
//   absent: names that may be asked for although missing (they give null)
//   caseSensitive: property lookup is exact (the `env` context on Linux)
export function strict(obj, name, { known = null, absent = null, caseSensitive = false } = {}) {
  META.set(obj, {
    name,
    caseSensitive,
    known: known ? new Set([...known].map(k => k.toLowerCase())) : null,
    absent: absent ? new Set([...absent].map(k => k.toLowerCase())) : null,
  });
  return obj;
}

function kindOf(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean') return 'boolean';
  if (typeof v === 'number') return 'number';
  if (typeof v === 'string') return 'string';
  if (Array.isArray(v)) return 'array';
  return 'object';
}

export function isTruthy(v) {
  switch (kindOf(v)) {
    case 'null':
      return false;
    case 'boolean':
      return v;
    case 'number':
      return v !== 0 && !Number.isNaN(v);
    case 'string':
      return v !== '';
    default:
      return true;
  }
}

// .NET Double.ToString("G15", InvariantCulture), close enough for the values
// workflows use.
export function numberToString(n) {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return 'Infinity';
  if (n === -Infinity) return '-Infinity';
  if (Object.is(n, -0) || n === 0) return '0';
  const p = Number(n.toPrecision(15));
  const exp = Math.floor(Math.log10(Math.abs(p)));
  if (exp >= 15 || exp < -5) {
    // G format switches to scientific notation: 1E+15, 1.5E-06
    let [mant, e] = p.toExponential().split('e');
    const sign = e[0] === '-' ? '-' : '+';
    let digits = e.replace(/^[+-]/, '');
    if (digits.length < 2) digits = '0' + digits;
    return `${mant.toUpperCase()}E${sign}${digits}`;
  }
  return String(p);
}

export function toStr(v) {
  switch (kindOf(v)) {
    case 'null':
      return '';
    case 'boolean':
      return v ? 'true' : 'false';
    case 'number':
      return numberToString(v);
    case 'string':
      return v;
    case 'array':
      return 'Array';
    default:
      return 'Object';
  }
}

// ExpressionUtility.ParseNumber
export function parseNumber(s) {
  s = (s ?? '').trim();
  if (s === '') return 0;
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return Number(s);
  if (/^0x[0-9a-fA-F]+$/.test(s)) {
    const n = parseInt(s.slice(2), 16);
    return n <= 0x7fffffff ? n : NaN;
  }
  if (/^0o[0-7]+$/.test(s)) {
    const n = parseInt(s.slice(2), 8);
    return n <= 0x7fffffff ? n : NaN;
  }
  return NaN;
}

function toNumber(v) {
  switch (kindOf(v)) {
    case 'null':
      return 0;
    case 'boolean':
      return v ? 1 : 0;
    case 'number':
      return v;
    case 'string':
      return parseNumber(v);
    default:
      return NaN;
  }
}

// EvaluationResult.CoerceTypes
function coerce(l, r) {
  let lk = kindOf(l);
  let rk = kindOf(r);
  if (lk === rk) return [l, r, lk, rk];
  if (lk === 'number' && rk === 'string') return [l, toNumber(r), 'number', 'number'];
  if (lk === 'string' && rk === 'number') return [toNumber(l), r, 'number', 'number'];
  if (lk === 'boolean' || lk === 'null') return coerce(toNumber(l), r);
  if (rk === 'boolean' || rk === 'null') return coerce(l, toNumber(r));
  return [l, r, lk, rk];
}

function cmpIgnoreCase(a, b) {
  // OrdinalIgnoreCase: compare upper-cased UTF-16 code units
  const x = a.toUpperCase();
  const y = b.toUpperCase();
  return x < y ? -1 : x > y ? 1 : 0;
}

export function looseEqual(a, b) {
  const [l, r, lk, rk] = coerce(a, b);
  if (lk !== rk) return false;
  switch (lk) {
    case 'null':
      return true;
    case 'number':
      return !Number.isNaN(l) && !Number.isNaN(r) && l === r;
    case 'string':
      return cmpIgnoreCase(l, r) === 0;
    case 'boolean':
      return l === r;
    default:
      return l === r;
  }
}

function looseGreater(a, b) {
  const [l, r, lk, rk] = coerce(a, b);
  if (lk !== rk) return false;
  switch (lk) {
    case 'number':
      return !Number.isNaN(l) && !Number.isNaN(r) && l > r;
    case 'string':
      return cmpIgnoreCase(l, r) > 0;
    case 'boolean':
      return l && !r;
    default:
      return false;
  }
}

function looseLess(a, b) {
  const [l, r, lk, rk] = coerce(a, b);
  if (lk !== rk) return false;
  switch (lk) {
    case 'number':
      return !Number.isNaN(l) && !Number.isNaN(r) && l < r;
    case 'string':
      return cmpIgnoreCase(l, r) < 0;
    case 'boolean':
      return !l && r;
    default:
      return false;
  }
}

function isPrimitive(v) {
  const k = kindOf(v);
  return k !== 'array' && k !== 'object';
}

// Property lookup on a context value (case-insensitive unless the dictionary is
// marked case-sensitive), with the strictness described at `strict()`.
export function getProperty(obj, key, path) {
  const k = kindOf(obj);
  if (k === 'array') {
    const n = typeof key === 'number' ? key : NaN;
    if (!Number.isInteger(n) || n < 0 || n >= obj.length) return null;
    return obj[n] ?? null;
  }
  if (k !== 'object') return null;
  const meta = META.get(obj);
  const skey = toStr(key);
  if (Object.prototype.hasOwnProperty.call(obj, skey)) return obj[skey] ?? null;
  const lower = skey.toLowerCase();
  if (!meta || !meta.caseSensitive) {
    for (const name of Object.keys(obj)) {
      if (name.toLowerCase() === lower) return obj[name] ?? null;
    }
  }
  if (meta && meta.known && !meta.known.has(lower) && !(meta.absent && meta.absent.has(lower))) {
    const avail = [...new Set([...Object.keys(obj), ...(meta.absent || [])])].sort().join(', ');
    throw new ExprError(
      `'${path}' is not available: '${meta.name}' has no '${skey}' in this emulator (available: ${avail || 'none'})`
    );
  }
  return null;
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

function isBoundary(c) {
  return '()[],.!><=&|'.includes(c) || /\s/.test(c);
}

function isLegalKeyword(s) {
  return /^[A-Za-z_][A-Za-z0-9_-]*$/.test(s);
}

function lex(src) {
  const toks = [];
  let i = 0;
  const last = () => toks[toks.length - 1];
  const valueEnded = () => {
    const t = last();
    return t && ['endgroup', 'endparams', 'endindex', 'prop', 'name', 'wildcard'].includes(t.k);
  };
  const unclosed = [];
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const start = i;
    if (c === '(') {
      if (last() && last().k === 'func') {
        toks.push({ k: 'startparams', pos: start });
        unclosed.push('params');
      } else {
        toks.push({ k: 'startgroup', pos: start });
        unclosed.push('group');
      }
      i++;
    } else if (c === ')') {
      const u = unclosed.pop();
      toks.push({ k: u === 'params' ? 'endparams' : 'endgroup', pos: start });
      i++;
    } else if (c === '[') {
      toks.push({ k: 'startindex', pos: start });
      unclosed.push('index');
      i++;
    } else if (c === ']') {
      unclosed.pop();
      toks.push({ k: 'endindex', pos: start });
      i++;
    } else if (c === ',') {
      toks.push({ k: 'sep', pos: start });
      i++;
    } else if (c === '*') {
      toks.push({ k: 'wildcard', pos: start });
      i++;
    } else if (c === "'") {
      let s = '';
      i++;
      let closed = false;
      while (i < src.length) {
        const d = src[i++];
        if (d === "'") {
          if (src[i] === "'") {
            s += "'";
            i++;
            continue;
          }
          closed = true;
          break;
        }
        s += d;
      }
      if (!closed) throw new ExprError(`Unexpected symbol: '${src.slice(start)}'. Located at position ${start + 1} within expression: ${src}`);
      toks.push({ k: 'lit', v: s, pos: start });
    } else if ('!<>=&|'.includes(c)) {
      const two = src.slice(i, i + 2);
      if (['!=', '>=', '<=', '==', '&&', '||'].includes(two)) {
        toks.push({ k: 'op', v: two, pos: start });
        i += 2;
      } else if ('!<>'.includes(c)) {
        toks.push({ k: 'op', v: c, pos: start });
        i++;
      } else {
        throw new ExprError(`Unexpected symbol: '${c}'. Located at position ${start + 1} within expression: ${src}`);
      }
    } else if (c === '.' && valueEnded()) {
      toks.push({ k: 'deref', pos: start });
      i++;
    } else if (c === '-' || c === '+' || c === '.' || /[0-9]/.test(c)) {
      i++;
      while (i < src.length && (!isBoundary(src[i]) || src[i] === '.')) i++;
      const s = src.slice(start, i);
      const n = parseNumber(s);
      if (Number.isNaN(n)) throw new ExprError(`Unexpected symbol: '${s}'. Located at position ${start + 1} within expression: ${src}`);
      toks.push({ k: 'lit', v: n, pos: start });
    } else {
      i++;
      while (i < src.length && !isBoundary(src[i])) i++;
      const s = src.slice(start, i);
      if (!isLegalKeyword(s)) throw new ExprError(`Unexpected symbol: '${s}'. Located at position ${start + 1} within expression: ${src}`);
      if (last() && last().k === 'deref') {
        toks.push({ k: 'prop', v: s, pos: start });
      } else if (s === 'null') {
        toks.push({ k: 'lit', v: null, pos: start });
      } else if (s === 'true' || s === 'false') {
        toks.push({ k: 'lit', v: s === 'true', pos: start });
      } else if (s === 'NaN') {
        toks.push({ k: 'lit', v: NaN, pos: start });
      } else if (s === 'Infinity') {
        toks.push({ k: 'lit', v: Infinity, pos: start });
      } else {
        let j = i;
        while (j < src.length && /\s/.test(src[j])) j++;
        toks.push({ k: src[j] === '(' ? 'func' : 'name', v: s, pos: start });
      }
    }
  }
  return toks;
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

const FUNCTIONS = {
  contains: [2, 2],
  startswith: [2, 2],
  endswith: [2, 2],
  format: [1, 255],
  join: [1, 2],
  tojson: [1, 1],
  fromjson: [1, 1],
  hashfiles: [1, 255],
  always: [0, 0],
  success: [0, 0],
  failure: [0, 0],
  cancelled: [0, 0],
};
export const STATUS_FUNCTIONS = new Set(['always', 'success', 'failure', 'cancelled']);

// Contexts GitHub has but this emulator does not provide.
const NOT_EMULATED = new Set(['matrix', 'strategy', 'needs', 'secrets', 'vars']);

// allowed: { contexts: Set of lower-case names, functions: Set of lower-case extra
// function names (status functions, hashfiles) }
export function parse(src, allowed) {
  const toks = lex(src);
  let p = 0;
  const peek = () => toks[p];
  const fail = (msg, t = peek()) => {
    throw new ExprError(`${msg}${t ? ` Located at position ${t.pos + 1}` : ''} within expression: ${src}`);
  };
  const expect = k => {
    const t = toks[p];
    if (!t || t.k !== k) fail(`Unexpected ${t ? `symbol` : 'end of expression'}${t ? ` '${src.slice(t.pos, t.pos + 10).split(/\s/)[0]}'` : ''}.`, t);
    p++;
    return t;
  };

  function primary() {
    const t = toks[p];
    if (!t) fail('Unexpected end of expression.');
    if (t.k === 'lit') {
      p++;
      return { t: 'lit', v: t.v };
    }
    if (t.k === 'startgroup') {
      p++;
      const e = orExpr();
      expect('endgroup');
      return e;
    }
    if (t.k === 'name') {
      p++;
      const name = t.v.toLowerCase();
      if (!allowed.contexts.has(name)) {
        if (NOT_EMULATED.has(name) && allowedByGitHub(name)) {
          throw new ExprError(`Named-value '${t.v}' is not emulated by tests/action/runner.mjs (expression: ${src})`);
        }
        throw new ExprError(`Unrecognized named-value: '${t.v}'. Located at position ${t.pos + 1} within expression: ${src}`);
      }
      return { t: 'ctx', name, raw: t.v };
    }
    if (t.k === 'func') {
      p++;
      const name = t.v.toLowerCase();
      const arity = FUNCTIONS[name];
      const needsPermission = STATUS_FUNCTIONS.has(name) || name === 'hashfiles';
      if (!arity || (needsPermission && !allowed.functions.has(name))) {
        throw new ExprError(`Unrecognized function: '${t.v}'. Located at position ${t.pos + 1} within expression: ${src}`);
      }
      expect('startparams');
      const args = [];
      if (peek() && peek().k !== 'endparams') {
        args.push(orExpr());
        while (peek() && peek().k === 'sep') {
          p++;
          args.push(orExpr());
        }
      }
      expect('endparams');
      if (args.length < arity[0]) throw new ExprError(`Too few parameters supplied: '${t.v}'. Located at position ${t.pos + 1} within expression: ${src}`);
      if (args.length > arity[1]) throw new ExprError(`Too many parameters supplied: '${t.v}'. Located at position ${t.pos + 1} within expression: ${src}`);
      return { t: 'fn', name, raw: t.v, args };
    }
    fail(`Unexpected symbol: '${src.slice(t.pos).split(/\s/)[0]}'.`, t);
  }

  function postfix() {
    let e = primary();
    for (;;) {
      const t = peek();
      if (t && t.k === 'deref') {
        p++;
        const n = toks[p];
        if (n && n.k === 'prop') {
          p++;
          e = { t: 'idx', obj: e, key: { t: 'lit', v: n.v }, label: n.v };
        } else if (n && n.k === 'wildcard') {
          throw new ExprError(`Wildcard filters ('.*') are not emulated (expression: ${src})`);
        } else {
          fail('Unexpected symbol after \'.\'.', n);
        }
      } else if (t && t.k === 'startindex') {
        p++;
        if (peek() && peek().k === 'wildcard') throw new ExprError(`Wildcard filters ('[*]') are not emulated (expression: ${src})`);
        const key = orExpr();
        expect('endindex');
        e = { t: 'idx', obj: e, key, label: null };
      } else {
        return e;
      }
    }
  }

  function unary() {
    const t = peek();
    if (t && t.k === 'op' && t.v === '!') {
      p++;
      return { t: 'not', e: unary() };
    }
    return postfix();
  }

  function binary(next, ops) {
    return function () {
      let l = next();
      for (;;) {
        const t = peek();
        if (t && t.k === 'op' && ops.includes(t.v)) {
          p++;
          const r = next();
          l = { t: 'bin', op: t.v, l, r };
        } else {
          return l;
        }
      }
    };
  }
  const cmpExpr = binary(unary, ['<', '<=', '>', '>=']);
  const eqExpr = binary(cmpExpr, ['==', '!=']);
  const andExpr = binary(eqExpr, ['&&']);
  const orExpr = binary(andExpr, ['||']);

  if (toks.length === 0) throw new ExprError('Expected an expression, got nothing');
  const tree = orExpr();
  if (p < toks.length) fail(`Unexpected symbol: '${src.slice(toks[p].pos).split(/\s/)[0]}'.`, toks[p]);
  return tree;
}

function allowedByGitHub(name) {
  return NOT_EMULATED.has(name);
}

export function usesStatusFunction(node) {
  switch (node.t) {
    case 'fn':
      return STATUS_FUNCTIONS.has(node.name) || node.args.some(usesStatusFunction);
    case 'idx':
      return usesStatusFunction(node.obj) || usesStatusFunction(node.key);
    case 'not':
      return usesStatusFunction(node.e);
    case 'bin':
      return usesStatusFunction(node.l) || usesStatusFunction(node.r);
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

function pathOf(node) {
  if (node.t === 'ctx') return node.raw;
  if (node.t === 'idx') return `${pathOf(node.obj)}${node.label !== null ? '.' + node.label : '[...]'}`;
  if (node.t === 'fn') return `${node.raw}(...)`;
  return '(...)';
}

function toJSONText(v) {
  return JSON.stringify(
    v,
    (k, x) => (typeof x === 'number' && !Number.isFinite(x) ? null : x),
    2
  );
}

function fromJSONValue(text) {
  let v;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ExprError(`Error parsing fromJson: ${e.message} (input: ${JSON.stringify(text).slice(0, 200)})`);
  }
  return v;
}

function format(fmt, args) {
  let out = '';
  let i = 0;
  while (i < fmt.length) {
    const lb = fmt.indexOf('{', i);
    const rb = fmt.indexOf('}', i);
    if (lb >= 0 && (rb < 0 || rb > lb)) {
      if (fmt[lb + 1] === '{') {
        out += fmt.slice(i, lb + 1);
        i = lb + 2;
        continue;
      }
      const m = /^(\d+)(:[^}]*)?}/.exec(fmt.slice(lb + 1));
      if (!m || Number(m[1]) > 255) throw new ExprError(`The following format string is invalid: ${fmt}`);
      const idx = Number(m[1]);
      if (idx > args.length - 1) throw new ExprError(`The following format string references more arguments than were supplied: ${fmt}`);
      if (m[2]) throw new ExprError(`format(): format specifiers are not emulated: ${fmt}`);
      out += fmt.slice(i, lb) + toStr(args[idx]);
      i = lb + 1 + m[0].length;
    } else if (rb >= 0) {
      if (fmt[rb + 1] === '}') {
        out += fmt.slice(i, rb + 1);
        i = rb + 2;
      } else {
        throw new ExprError(`The following format string is invalid: ${fmt}`);
      }
    } else {
      out += fmt.slice(i);
      break;
    }
  }
  return out;
}

// env: { contexts: {name: value}, status: {success(), failure(), cancelled()} | null,
//        hashFiles(patterns: string[], followSymlinks: boolean) => string }
export function evaluate(node, env) {
  const ev = n => evaluate(n, env);
  switch (node.t) {
    case 'lit':
      return node.v;
    case 'ctx': {
      if (!Object.prototype.hasOwnProperty.call(env.contexts, node.name)) {
        throw new ExprError(`Named-value '${node.raw}' has no value here`);
      }
      return env.contexts[node.name];
    }
    case 'idx': {
      const obj = ev(node.obj);
      const key = ev(node.key);
      return getProperty(obj, key, `${pathOf(node.obj)}.${toStr(key)}`);
    }
    case 'not':
      return !isTruthy(ev(node.e));
    case 'bin': {
      if (node.op === '&&') {
        const l = ev(node.l);
        return isTruthy(l) ? ev(node.r) : l;
      }
      if (node.op === '||') {
        const l = ev(node.l);
        return isTruthy(l) ? l : ev(node.r);
      }
      const l = ev(node.l);
      const r = ev(node.r);
      switch (node.op) {
        case '==':
          return looseEqual(l, r);
        case '!=':
          return !looseEqual(l, r);
        case '<':
          return looseLess(l, r);
        case '<=':
          return looseEqual(l, r) || looseLess(l, r);
        case '>':
          return looseGreater(l, r);
        case '>=':
          return looseEqual(l, r) || looseGreater(l, r);
      }
      throw new ExprError(`internal: operator ${node.op}`);
    }
    case 'fn':
      return callFunction(node, env);
  }
  throw new ExprError(`internal: node ${node.t}`);
}

function callFunction(node, env) {
  const args = () => node.args.map(a => evaluate(a, env));
  switch (node.name) {
    case 'always':
      return true;
    case 'success':
    case 'failure':
    case 'cancelled':
      if (!env.status) throw new ExprError(`${node.raw}() is not available here`);
      return env.status[node.name]();
    case 'contains': {
      const [s, item] = args();
      if (isPrimitive(s)) {
        if (!isPrimitive(item)) return false;
        return toStr(s).toUpperCase().includes(toStr(item).toUpperCase());
      }
      if (Array.isArray(s)) return s.some(x => looseEqual(item, x));
      return false;
    }
    case 'startswith': {
      const [s, v] = args();
      if (!isPrimitive(s) || !isPrimitive(v)) return false;
      return toStr(s).toUpperCase().startsWith(toStr(v).toUpperCase());
    }
    case 'endswith': {
      const [s, v] = args();
      if (!isPrimitive(s) || !isPrimitive(v)) return false;
      return toStr(s).toUpperCase().endsWith(toStr(v).toUpperCase());
    }
    case 'format': {
      const [f, ...rest] = args();
      return format(toStr(f), rest);
    }
    case 'join': {
      const a = args();
      const items = a[0];
      if (Array.isArray(items)) {
        if (items.length === 0) return '';
        let sep = ',';
        if (a.length > 1 && isPrimitive(a[1])) sep = toStr(a[1]);
        return items.map(toStr).join(sep);
      }
      if (isPrimitive(items)) return toStr(items);
      return '';
    }
    case 'tojson':
      return toJSONText(args()[0]);
    case 'fromjson':
      return fromJSONValue(toStr(args()[0]));
    case 'hashfiles': {
      const a = args().map(toStr);
      let follow = false;
      if (a[0].startsWith('--')) {
        if (a[0].toLowerCase() !== '--follow-symbolic-links') {
          throw new ExprError(`Invalid glob option ${a[0]}, avaliable option: '--follow-symbolic-links'.`);
        }
        follow = true;
        a.shift();
      }
      if (!env.hashFiles) throw new ExprError('hashFiles() is not available here');
      return env.hashFiles(a, follow);
    }
  }
  throw new ExprError(`internal: function ${node.name}`);
}

// ---------------------------------------------------------------------------
// Templates: strings with ${{ }} inside
// ---------------------------------------------------------------------------

// Splits a string into literal and expression parts.
export function splitTemplate(s) {
  const parts = [];
  let i = 0;
  while (i < s.length) {
    const start = s.indexOf('${{', i);
    if (start < 0) {
      parts.push({ lit: s.slice(i) });
      break;
    }
    if (start > i) parts.push({ lit: s.slice(i, start) });
    let j = start + 3;
    let inString = false;
    let end = -1;
    while (j < s.length) {
      const c = s[j];
      if (c === "'") inString = !inString;
      else if (!inString && c === '}' && s[j + 1] === '}') {
        end = j;
        break;
      }
      j++;
    }
    if (end < 0) throw new ExprError(`The expression is not closed. An unescaped \${{ sequence was found, but the closing }} sequence was not found: ${s}`);
    const expr = s.slice(start + 3, end).trim();
    if (expr === '') throw new ExprError(`An expression was expected: ${s}`);
    parts.push({ expr });
    i = end + 2;
  }
  return parts;
}

export function hasExpression(s) {
  return typeof s === 'string' && s.includes('${{');
}
