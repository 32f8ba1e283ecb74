using System.Globalization;
using System.Text;

namespace PiServe.Inference.Chat.Jinja;

/// <summary>Variables visible at one point: a for loop or a macro call opens a child scope, if does not.</summary>
internal sealed class Scope(Scope? parent)
{
    private readonly Dictionary<string, object?> _vars = new(StringComparer.Ordinal);

    public Scope? Parent { get; } = parent;

    public bool TryGet(string name, out object? value)
    {
        for (var s = this; s is not null; s = s.Parent)
            if (s._vars.TryGetValue(name, out value)) return true;
        value = null;
        return false;
    }

    public void Set(string name, object? value) => _vars[name] = value;
}

/// <summary>Renders a parsed template: Jinja2 semantics with Python values.</summary>
internal sealed class Interpreter
{
    private enum Flow { Normal, Break, Continue }

    private const int MaxCallDepth = 200;

    private readonly Func<DateTime> _now;
    private readonly RenderBudget _budget;
    private int _loopDepth;
    private int _callDepth;

    /// <summary>The rendered prompt; every other StringBuilder the interpreter writes to becomes a string value.</summary>
    private StringBuilder? _output;

    public Interpreter(Func<DateTime>? now = null, RenderBudget? budget = null)
    {
        _now = now ?? (() => DateTime.Now);
        _budget = budget ?? new RenderBudget(RenderLimits.Default, CancellationToken.None);
    }

    public string Render(List<Stmt> body, IEnumerable<KeyValuePair<string, object?>> variables)
    {
        using var active = _budget.Activate();
        var globals = new Scope(null);
        globals.Set("range", new PyCallable("range", Range));
        globals.Set("namespace", new PyCallable("namespace", NewNamespace));
        globals.Set("dict", new PyCallable("dict", NewDict));
        globals.Set("raise_exception", new PyCallable("raise_exception", args =>
            throw new TemplateRaisedException(args.Positional.Count > 0 ? Py.Str(args.Positional[0]) : "")));
        globals.Set("strftime_now", new PyCallable("strftime_now", args =>
            Strftime.Format(_now(), Py.Str(args.Bind("strftime_now", ["format"], [Undefined.Instance])[0]))));
        var scope = new Scope(globals);
        foreach (var (k, v) in variables) scope.Set(k, v);
        _output = new StringBuilder();
        try
        {
            Exec(body, scope, _output);
        }
        catch (RenderLimitExceededException e) when (e.Line is null && body.Count > 0)
        {
            // Outside any expression (e.g. template text past the output limit): the template's start.
            (e.Line, e.Column) = (body[0].Line, body[0].Column);
            throw;
        }
        return _output.ToString();
    }

    /// <summary>Writes text to the prompt or to a string value being built, checking its limit before it grows.</summary>
    private void Emit(StringBuilder sb, string text)
    {
        if (ReferenceEquals(sb, _output))
        {
            int max = _budget.Limits.MaxOutputChars;
            if ((long)sb.Length + text.Length > max)
                throw new RenderLimitExceededException($"the chat template exceeded its output limit of {max} characters",
                    RenderLimitKind.OutputChars, max);
        }
        else RenderBudget.CheckStringLength((long)sb.Length + text.Length);
        RenderBudget.ChargeFor(text);
        sb.Append(text);
    }

    /// <summary>A value an operation built: too large a string or list is refused here if no earlier check caught it.</summary>
    private static object? Built(object? value)
    {
        switch (value)
        {
            case string s: RenderBudget.CheckStringLength(s.Length); break;
            case List<object?> l: RenderBudget.CheckListLength(l.Count); break;
            case PyTuple t: RenderBudget.CheckListLength(t.Count); break;
        }
        return value;
    }

    // ---------------------------------------------------------------- globals

    private static object? Range(CallArgs args)
    {
        if (args.Named.Count > 0) throw new JinjaRuntimeException("range() takes no keyword arguments");
        var p = args.Positional.Select(Py.ToLong).ToArray();
        long start = 0, stop, step = 1;
        switch (p.Length)
        {
            case 1: stop = p[0]; break;
            case 2: start = p[0]; stop = p[1]; break;
            case 3: start = p[0]; stop = p[1]; step = p[2]; break;
            default: throw new JinjaRuntimeException($"range expected 1 to 3 arguments, got {p.Length}");
        }
        if (step == 0) throw new JinjaRuntimeException("range() arg 3 must not be zero");
        // The length first (in 128 bits, so that range(-2**63, 2**63-1) cannot overflow): nothing is allocated
        // for a range past the list limit or the work budget.
        Int128 span = step > 0 ? (Int128)stop - start : (Int128)start - stop;
        Int128 absStep = step > 0 ? step : -(Int128)step;
        Int128 length = span <= 0 ? 0 : (span - 1) / absStep + 1;
        RenderBudget.CheckListLength(length > long.MaxValue ? long.MaxValue : (long)length);
        RenderBudget.Charge((long)length);
        var list = new List<object?>((int)length);
        for (long i = 0, value = start; i < (long)length; i++, value += step) list.Add(value);
        return list;
    }

    private static object? NewNamespace(CallArgs args)
    {
        var ns = new Namespace();
        foreach (var p in args.Positional)
        {
            if (p is not PyDict d) throw new JinjaRuntimeException("namespace() takes only a dict as positional argument");
            foreach (var (k, v) in d) ns.Attributes[k] = v;
        }
        foreach (var (k, v) in args.Named) ns.Attributes[k] = v;
        return ns;
    }

    private static object? NewDict(CallArgs args)
    {
        var d = new PyDict();
        foreach (var p in args.Positional)
        {
            if (p is PyDict src) foreach (var (k, v) in src) d[k] = v;
            else foreach (var pair in Py.Iterate(p))
                {
                    var kv = Py.ToList(pair);
                    if (kv.Count != 2) throw new JinjaRuntimeException("dictionary update sequence element has the wrong length");
                    d[kv[0]] = kv[1];
                }
        }
        foreach (var (k, v) in args.Named) d[k] = v;
        return d;
    }

    // ---------------------------------------------------------------- statements

    private Flow Exec(List<Stmt> body, Scope scope, StringBuilder sb)
    {
        RenderBudget.EnsureStack();
        foreach (var stmt in body)
        {
            _budget.Spend(1);
            Flow flow;
            try { flow = ExecOne(stmt, scope, sb); }
            catch (RenderLimitExceededException e) when (e.Line is null)
            {
                (e.Line, e.Column) = (stmt.Line, stmt.Column);
                throw;
            }
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    private Flow ExecOne(Stmt stmt, Scope scope, StringBuilder sb)
    {
        switch (stmt)
        {
            case TextStmt t:
                Emit(sb, t.Text);
                return Flow.Normal;
            case OutputStmt o:
                Emit(sb, Py.Str(Eval(o.Expr, scope)));
                return Flow.Normal;
            case IfStmt i:
                foreach (var (test, branch) in i.Branches)
                    if (Py.Truthy(Eval(test, scope))) return Exec(branch, scope, sb);
                return i.Else is null ? Flow.Normal : Exec(i.Else, scope, sb);
            case ForStmt f:
                ExecFor(f, scope, sb);
                return Flow.Normal;
            case SetStmt s:
                Assign(s.Target, Eval(s.Value, scope), scope, s);
                return Flow.Normal;
            case SetBlockStmt sbk:
                {
                    var inner = new StringBuilder();
                    Exec(sbk.Body, scope, inner);
                    Assign(sbk.Target, ApplyFilters(sbk.Filters, inner.ToString(), scope), scope, sbk);
                    return Flow.Normal;
                }
            case MacroStmt m:
                scope.Set(m.Name, MakeMacro(m, scope));
                return Flow.Normal;
            case FilterBlockStmt fb:
                {
                    var inner = new StringBuilder();
                    Exec(fb.Body, scope, inner);
                    Emit(sb, Py.Str(ApplyFilters(fb.Filters, inner.ToString(), scope)));
                    return Flow.Normal;
                }
            case BreakStmt: return Flow.Break;
            case ContinueStmt: return Flow.Continue;
        }
        throw new JinjaRuntimeException($"cannot execute {stmt.GetType().Name}");
    }

    private object? ApplyFilters(List<FilterExpr> filters, object? value, Scope scope)
    {
        foreach (var f in filters)
            value = Located(f, () => ApplyFilter(f.Name, value, EvalArgs(f.Args, scope)));
        return value;
    }

    private void ExecFor(ForStmt f, Scope scope, StringBuilder sb)
    {
        var iterable = Eval(f.Iterable, scope);
        if (iterable is null) throw Locate(new JinjaRuntimeException("'NoneType' object is not iterable"), f.Iterable);
        List<object?> items = Located(f.Iterable, () => Py.ToList(iterable));
        if (f.Filter is not null)
        {
            items = items.Where(item =>
            {
                _budget.Spend(1);
                var filterScope = new Scope(scope);
                Bind(f.Target, item, filterScope, f);
                return Py.Truthy(Eval(f.Filter, filterScope));
            }).ToList();
        }
        if (items.Count == 0)
        {
            if (f.Else is not null) Exec(f.Else, new Scope(scope), sb);
            return;
        }
        var loop = new LoopContext(items, _loopDepth);
        _loopDepth++;
        try
        {
            for (int i = 0; i < items.Count; i++)
            {
                // As in Jinja2, what the body sets lives for one iteration only (namespace() objects carry state).
                // Each iteration is a step of its own, so that an empty body cannot loop for free.
                _budget.Spend(1);
                var iterationScope = new Scope(scope);
                loop.Index0 = i;
                Bind(f.Target, items[i], iterationScope, f);
                iterationScope.Set("loop", loop);
                if (Exec(f.Body, iterationScope, sb) == Flow.Break) break;
            }
        }
        finally
        {
            _loopDepth--;
        }
    }

    private static void Bind(Target target, object? value, Scope scope, AstNode at)
    {
        if (!target.Unpack)
        {
            scope.Set(target.Names[0], value);
            return;
        }
        List<object?> parts;
        try { parts = Py.ToList(value); }
        catch (JinjaRuntimeException e) { throw Locate(new JinjaRuntimeException($"cannot unpack non-iterable {Py.TypeName(value)} object"), at, e); }
        if (parts.Count != target.Names.Count)
            throw Locate(new JinjaRuntimeException(parts.Count > target.Names.Count
                ? $"too many values to unpack (expected {target.Names.Count})"
                : $"not enough values to unpack (expected {target.Names.Count}, got {parts.Count})"), at);
        for (int i = 0; i < parts.Count; i++) scope.Set(target.Names[i], parts[i]);
    }

    private static void Assign(Target target, object? value, Scope scope, AstNode at)
    {
        if (target.Attribute is null)
        {
            Bind(target, value, scope, at);
            return;
        }
        string name = target.Names[0];
        if (!scope.TryGet(name, out var obj) || obj is not Namespace ns)
            throw Locate(new JinjaRuntimeException($"cannot assign attribute on non-namespace object '{name}'"), at);
        ns.Attributes[target.Attribute] = value;
    }

    private PyCallable MakeMacro(MacroStmt m, Scope definingScope)
    {
        return new PyCallable(m.Name, args =>
        {
            if (_callDepth >= MaxCallDepth) throw new JinjaRuntimeException($"macro '{m.Name}': maximum recursion depth ({MaxCallDepth}) exceeded");
            var callScope = new Scope(definingScope);
            var varargs = new List<object?>();
            for (int i = 0; i < args.Positional.Count; i++)
            {
                if (i < m.Parameters.Count) callScope.Set(m.Parameters[i].Name, args.Positional[i]);
                else varargs.Add(args.Positional[i]);
            }
            var kwargs = new PyDict();
            var given = new HashSet<string>(m.Parameters.Take(args.Positional.Count).Select(p => p.Name));
            foreach (var (k, v) in args.Named)
            {
                if (m.Parameters.Any(p => p.Name == k))
                {
                    if (!given.Add(k)) throw new JinjaRuntimeException($"macro '{m.Name}' got multiple values for argument '{k}'");
                    callScope.Set(k, v);
                }
                else kwargs[k] = v;
            }
            foreach (var (pname, dflt) in m.Parameters)
            {
                if (given.Contains(pname)) continue;
                callScope.Set(pname, dflt is null ? Undefined.Named(pname) : Eval(dflt, callScope));
            }
            callScope.Set("varargs", new PyTuple([.. varargs]));
            callScope.Set("kwargs", kwargs);

            var savedLoops = _loopDepth;
            _loopDepth = 0;
            _callDepth++;
            try
            {
                var sb = new StringBuilder();
                Exec(m.Body, callScope, sb);
                return sb.ToString();
            }
            finally
            {
                _callDepth--;
                _loopDepth = savedLoops;
            }
        });
    }

    // ---------------------------------------------------------------- expressions

    private static JinjaRuntimeException Locate(JinjaRuntimeException e, AstNode at, Exception? inner = null)
    {
        if (e is LocatedRuntimeException) return e;
        return new LocatedRuntimeException(e.Message, at.Line, at.Column, inner ?? e);
    }

    private static T Located<T>(AstNode at, Func<T> f)
    {
        try { return f(); }
        catch (JinjaRuntimeException e) when (e is not LocatedRuntimeException) { throw Locate(e, at); }
    }

    private CallArgs EvalArgs(Arguments args, Scope scope)
    {
        if (args.Positional.Count == 0 && args.Named.Count == 0) return CallArgs.Empty;
        var positional = args.Positional.Select(a => Eval(a, scope)).ToList();
        var named = args.Named.Select(kv => new KeyValuePair<string, object?>(kv.Key, Eval(kv.Value, scope))).ToList();
        return new CallArgs(positional, named);
    }

    public object? Eval(Expr e, Scope scope)
    {
        try
        {
            _budget.Spend(1);
            RenderBudget.EnsureStack();
            return EvalCore(e, scope);
        }
        catch (JinjaRuntimeException ex) when (ex is not LocatedRuntimeException) { throw Locate(ex, e); }
        catch (RenderLimitExceededException ex) when (ex.Line is null)
        {
            (ex.Line, ex.Column) = (e.Line, e.Column);
            throw;
        }
    }

    /// <summary>A filter, paying for the size of what it reads and builds.</summary>
    private static object? ApplyFilter(string name, object? value, CallArgs args)
    {
        ChargeForArguments(value, args);
        var result = Built(Filters.Apply(name, value, args));
        RenderBudget.ChargeFor(result);
        return result;
    }

    private static void ChargeForArguments(object? value, CallArgs args)
    {
        RenderBudget.ChargeFor(value);
        foreach (var a in args.Positional) RenderBudget.ChargeFor(a);
        foreach (var (_, a) in args.Named) RenderBudget.ChargeFor(a);
    }

    private object? EvalCore(Expr e, Scope scope)
    {
        switch (e)
        {
            case ConstExpr c: return c.Value;
            case NameExpr n: return scope.TryGet(n.Name, out var v) ? v : Undefined.Named(n.Name);
            case GetAttrExpr ga: return Py.GetAttr(Eval(ga.Obj, scope), ga.Name);
            case GetItemExpr gi:
                {
                    var obj = Eval(gi.Obj, scope);
                    return Py.GetItem(obj, Eval(gi.Key, scope));
                }
            case SliceExpr sl:
                {
                    var obj = Eval(sl.Obj, scope);
                    RenderBudget.ChargeFor(obj);
                    return Py.Slice(obj, Opt(sl.Start), Opt(sl.Stop), Opt(sl.Step));
                }
            case CallExpr call:
                {
                    var callee = Eval(call.Callee, scope);
                    var args = EvalArgs(call.Args, scope);
                    ChargeForArguments(null, args);
                    var result = callee switch
                    {
                        PyCallable f => f.Invoke(args),
                        Undefined u => throw Py.UndefinedError(u),
                        _ => throw new JinjaRuntimeException($"'{Py.TypeName(callee)}' object is not callable"),
                    };
                    RenderBudget.ChargeFor(result);
                    return Built(result);
                }
            case FilterExpr fe:
                {
                    var value = fe.Operand is null ? Undefined.Instance : Eval(fe.Operand, scope);
                    return ApplyFilter(fe.Name, value, EvalArgs(fe.Args, scope));
                }
            case TestExpr te:
                {
                    var value = Eval(te.Operand, scope);
                    RenderBudget.ChargeFor(value);
                    bool result = Tests.Apply(te.Name, value, EvalArgs(te.Args, scope));
                    return te.Negated ? !result : result;
                }
            case UnaryExpr u:
                {
                    var value = Eval(u.Operand, scope);
                    return u.Op switch
                    {
                        "not" => !Py.Truthy(value),
                        "-" => Py.Negate(value),
                        _ => Py.Plus(value),
                    };
                }
            case BinaryExpr b:
                {
                    var left = Eval(b.Left, scope);
                    switch (b.Op)
                    {
                        case "and": return Py.Truthy(left) ? Eval(b.Right, scope) : left;
                        case "or": return Py.Truthy(left) ? left : Eval(b.Right, scope);
                        case "~":
                            {
                                string l = Py.Str(left), r = Py.Str(Eval(b.Right, scope));
                                RenderBudget.CheckStringLength((long)l.Length + r.Length);
                                RenderBudget.ChargeFor(l);
                                RenderBudget.ChargeFor(r);
                                return l + r;
                            }
                        default:
                            {
                                var right = Eval(b.Right, scope);
                                RenderBudget.ChargeFor(left);
                                RenderBudget.ChargeFor(right);
                                return Built(Py.Binary(b.Op, left, right));
                            }
                    }
                }
            case CompareExpr cmp:
                {
                    var left = Eval(cmp.First, scope);
                    foreach (var (op, operand) in cmp.Rest)
                    {
                        var right = Eval(operand, scope);
                        RenderBudget.ChargeFor(left);
                        RenderBudget.ChargeFor(right);
                        bool ok = op switch
                        {
                            "==" => Py.Equal(left, right),
                            "!=" => !Py.Equal(left, right),
                            "<" => Py.Compare(left, right, op) < 0,
                            "<=" => Py.Compare(left, right, op) <= 0,
                            ">" => Py.Compare(left, right, op) > 0,
                            ">=" => Py.Compare(left, right, op) >= 0,
                            "in" => Py.Contains(right, left),
                            _ => !Py.Contains(right, left),
                        };
                        if (!ok) return false;
                        left = right;
                    }
                    return true;
                }
            case CondExpr ce:
                if (Py.Truthy(Eval(ce.Test, scope))) return Eval(ce.Then, scope);
                return ce.Else is null ? Undefined.Named("the else branch of an inline if") : Eval(ce.Else, scope);
            case ListExpr l: return l.Items.Select(x => Eval(x, scope)).ToList();
            case TupleExpr t: return new PyTuple([.. t.Items.Select(x => Eval(x, scope))]);
            case DictExpr d:
                {
                    var dict = new PyDict();
                    foreach (var (k, val) in d.Items) dict[Eval(k, scope)] = Eval(val, scope);
                    return dict;
                }
        }
        throw new JinjaRuntimeException($"cannot evaluate {e.GetType().Name}");

        object? Opt(Expr? x) => x is null ? null : Eval(x, scope);
    }
}

/// <summary>A runtime error that already carries the line and column of the expression that failed.</summary>
internal sealed class LocatedRuntimeException(string message, int line, int column, Exception inner)
    : JinjaRuntimeException($"line {line}, column {column}: {message}")
{
    public string Reason { get; } = message;
    public int Line { get; } = line;
    public int Column { get; } = column;
    public Exception Original { get; } = inner;
}

/// <summary>Python's datetime.strftime for strftime_now().</summary>
internal static class Strftime
{
    private static readonly string[] Days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
    private static readonly string[] Months =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

    public static string Format(DateTime t, string fmt)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        for (int i = 0; i < fmt.Length; i++)
        {
            char c = fmt[i];
            if (c != '%' || i + 1 >= fmt.Length) { sb.Append(c); continue; }
            char k = fmt[++i];
            bool noPad = false;
            if (k == '-' && i + 1 < fmt.Length) { noPad = true; k = fmt[++i]; }
            string Pad(int v, int width) => noPad ? v.ToString(inv) : v.ToString(new string('0', width), inv);
            int hour12 = t.Hour % 12 == 0 ? 12 : t.Hour % 12;
            sb.Append(k switch
            {
                'a' => Days[(int)t.DayOfWeek][..3],
                'A' => Days[(int)t.DayOfWeek],
                'b' or 'h' => Months[t.Month - 1][..3],
                'B' => Months[t.Month - 1],
                'd' => Pad(t.Day, 2),
                'e' => t.Day.ToString(inv).PadLeft(2),
                'm' => Pad(t.Month, 2),
                'y' => Pad(t.Year % 100, 2),
                'Y' => t.Year.ToString(inv),
                'H' => Pad(t.Hour, 2),
                'I' => Pad(hour12, 2),
                'M' => Pad(t.Minute, 2),
                'S' => Pad(t.Second, 2),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'j' => Pad(t.DayOfYear, 3),
                'w' => ((int)t.DayOfWeek).ToString(inv),
                'f' => (t.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", inv),
                'F' => t.ToString("yyyy-MM-dd", inv),
                'T' => t.ToString("HH:mm:ss", inv),
                'D' => t.ToString("MM/dd/yy", inv),
                'c' => $"{Days[(int)t.DayOfWeek][..3]} {Months[t.Month - 1][..3]} {t.Day,2} {t:HH:mm:ss} {t.Year}",
                'x' => t.ToString("MM/dd/yy", inv),
                'X' => t.ToString("HH:mm:ss", inv),
                'Z' => "",
                'z' => "",
                '%' => "%",
                _ => "%" + (noPad ? "-" : "") + k,
            });
        }
        return sb.ToString();
    }
}
