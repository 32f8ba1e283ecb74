namespace PiServe.Inference.Chat.Jinja;

/// <summary>Recursive-descent parser with Jinja2's grammar and operator precedence.</summary>
internal sealed class Parser
{
    private static readonly HashSet<string> CompareOps = ["==", "!=", "<", ">", "<=", ">="];

    /// <summary>
    /// How deeply expressions and blocks may nest. Real templates nest a handful of levels; the bound keeps a
    /// hostile one from overflowing the stack of the parser (and of the interpreter walking its tree), which
    /// would take down the whole process rather than fail one request.
    /// </summary>
    public const int MaxNesting = 200;

    private readonly List<Token> _tokens;
    private int _i;
    private int _nesting;
    private int _loopDepth;
    private int _macroDepth;

    private Parser(List<Token> tokens) => _tokens = tokens;

    public static List<Stmt> Parse(string source)
    {
        var parser = new Parser(Lexer.Tokenize(source));
        var body = parser.Subparse(null, out _);
        return body;
    }

    // ---------------------------------------------------------------- token helpers

    private Token Current => _tokens[_i];
    private Token Peek(int k = 1) => _tokens[Math.Min(_i + k, _tokens.Count - 1)];
    private Token Next() => _tokens[_i < _tokens.Count - 1 ? _i++ : _i];

    private static JinjaSyntaxException Fail(Token at, string message) => new(message, at.Line, at.Column);

    private Token ExpectOp(string op)
    {
        if (!Current.IsOp(op)) throw Fail(Current, $"expected '{op}', got {Current.Describe()}");
        return Next();
    }

    private Token ExpectName(string? name = null)
    {
        if (Current.Kind != TokenKind.Name || (name is not null && Current.Value != name))
            throw Fail(Current, name is null ? $"expected a name, got {Current.Describe()}" : $"expected '{name}', got {Current.Describe()}");
        return Next();
    }

    private void ExpectBlockEnd()
    {
        if (Current.Kind != TokenKind.BlockEnd) throw Fail(Current, $"expected end of statement '%}}', got {Current.Describe()}");
        Next();
    }

    private bool SkipOp(string op)
    {
        if (!Current.IsOp(op)) return false;
        Next();
        return true;
    }

    private bool SkipName(string name)
    {
        if (!Current.IsName(name)) return false;
        Next();
        return true;
    }

    /// <summary>Enters one level of nesting at the current token; pair with <see cref="Leave"/>.</summary>
    private void Enter()
    {
        if (++_nesting > MaxNesting || !System.Runtime.CompilerServices.RuntimeHelpers.TryEnsureSufficientExecutionStack())
            throw Fail(Current, $"the template nests expressions or blocks more than {MaxNesting} levels deep");
    }

    private void Leave() => _nesting--;

    private static T At<T>(T node, Token t) where T : AstNode
    {
        node.Line = t.Line;
        node.Column = t.Column;
        return node;
    }

    // ---------------------------------------------------------------- statements

    /// <summary>
    /// Parses template content until a block tag whose name is in <paramref name="endTags"/>; on return the
    /// current token is that name. With no end tags, parses to the end of the template.
    /// </summary>
    private List<Stmt> Subparse(string[]? endTags, out Token endTag)
    {
        var body = new List<Stmt>();
        while (true)
        {
            var t = Current;
            switch (t.Kind)
            {
                case TokenKind.Text:
                    Next();
                    body.Add(At(new TextStmt(t.Value), t));
                    break;
                case TokenKind.VarBegin:
                    {
                        Next();
                        var expr = ParseTuple(withCondExpr: true);
                        if (Current.Kind != TokenKind.VarEnd) throw Fail(Current, $"expected end of print statement '}}}}', got {Current.Describe()}");
                        Next();
                        body.Add(At(new OutputStmt(expr), t));
                        break;
                    }
                case TokenKind.BlockBegin:
                    {
                        Next();
                        var name = Current;
                        if (name.Kind != TokenKind.Name) throw Fail(name, $"expected a statement name, got {name.Describe()}");
                        if (endTags is not null && endTags.Contains(name.Value))
                        {
                            endTag = name;
                            return body;
                        }
                        ParseStatement(body);
                        break;
                    }
                case TokenKind.Eof:
                    if (endTags is not null)
                        throw Fail(t, $"unexpected end of template; expected {string.Join(" or ", endTags.Select(e => $"'{{% {e} %}}'"))}");
                    endTag = t;
                    return body;
                default:
                    throw Fail(t, $"unexpected {t.Describe()}");
            }
        }
    }

    private void ParseStatement(List<Stmt> body)
    {
        Enter();
        try { ParseStatementCore(body); }
        finally { Leave(); }
    }

    private void ParseStatementCore(List<Stmt> body)
    {
        var t = Current;
        switch (t.Value)
        {
            case "if": body.Add(ParseIf()); return;
            case "for": body.Add(ParseFor()); return;
            case "set": body.Add(ParseSet()); return;
            case "macro": body.Add(ParseMacro()); return;
            case "filter": body.Add(ParseFilterBlock()); return;
            case "break":
            case "continue":
                Next();
                if (_loopDepth == 0) throw Fail(t, $"'{t.Value}' outside of a loop");
                ExpectBlockEnd();
                body.Add(t.Value == "break" ? At(new BreakStmt(), t) : At(new ContinueStmt(), t));
                return;
            case "generation":
                {
                    // transformers' {% generation %} marks assistant text for masks; it renders its body as is.
                    Next();
                    ExpectBlockEnd();
                    var inner = Subparse(["endgeneration"], out _);
                    Next();
                    ExpectBlockEnd();
                    body.AddRange(inner);
                    return;
                }
            case "elif" or "else" or "endif" or "endfor" or "endset" or "endmacro" or "endfilter" or "endgeneration" or "endraw":
                throw Fail(t, $"unexpected '{t.Value}'");
            case "include" or "import" or "from" or "extends" or "block" or "call" or "with" or "do" or "autoescape":
                throw Fail(t, $"the '{t.Value}' tag is not supported in chat templates");
            default:
                throw Fail(t, $"unknown tag '{t.Value}'");
        }
    }

    private IfStmt ParseIf()
    {
        var start = Next(); // if
        var branches = new List<(Expr, List<Stmt>)>();
        List<Stmt>? otherwise = null;
        var test = ParseTuple(withCondExpr: true);
        ExpectBlockEnd();
        while (true)
        {
            var body = Subparse(["elif", "else", "endif"], out var end);
            branches.Add((test, body));
            Next();
            if (end.Value == "elif")
            {
                test = ParseTuple(withCondExpr: true);
                ExpectBlockEnd();
                continue;
            }
            if (end.Value == "else")
            {
                ExpectBlockEnd();
                otherwise = Subparse(["endif"], out _);
                Next();
            }
            ExpectBlockEnd();
            return At(new IfStmt(branches, otherwise), start);
        }
    }

    private ForStmt ParseFor()
    {
        var start = Next(); // for
        var target = ParseTarget(allowAttribute: false);
        ExpectName("in");
        var iterable = ParseTuple(withCondExpr: false, stopAtName: "recursive");
        Expr? filter = null;
        if (SkipName("if")) filter = ParseExpression(withCondExpr: true);
        if (Current.IsName("recursive")) throw Fail(Current, "recursive loops are not supported");
        ExpectBlockEnd();
        _loopDepth++;
        var body = Subparse(["endfor", "else"], out var end);
        _loopDepth--;
        Next();
        List<Stmt>? otherwise = null;
        if (end.Value == "else")
        {
            ExpectBlockEnd();
            otherwise = Subparse(["endfor"], out _);
            Next();
        }
        ExpectBlockEnd();
        return At(new ForStmt(target, iterable, filter, body, otherwise), start);
    }

    /// <summary>name, name.attr, or a tuple of names (with or without parentheses).</summary>
    private Target ParseTarget(bool allowAttribute)
    {
        if (SkipOp("("))
        {
            var t = new Target { Unpack = true };
            do
            {
                if (Current.IsOp(")")) break;
                t.Names.Add(ExpectName().Value);
            } while (SkipOp(","));
            ExpectOp(")");
            return t;
        }
        var name = ExpectName();
        if (allowAttribute && Current.IsOp(".") && Peek().Kind == TokenKind.Name)
        {
            Next();
            var attr = ExpectName();
            var at = new Target { Attribute = attr.Value };
            at.Names.Add(name.Value);
            return at;
        }
        if (!Current.IsOp(","))
        {
            var single = new Target();
            single.Names.Add(name.Value);
            return single;
        }
        var tuple = new Target { Unpack = true };
        tuple.Names.Add(name.Value);
        while (SkipOp(","))
        {
            if (Current.Kind != TokenKind.Name || Current.IsName("in")) break;
            tuple.Names.Add(Next().Value);
        }
        return tuple;
    }

    private Stmt ParseSet()
    {
        var start = Next(); // set
        var target = ParseTarget(allowAttribute: true);
        if (SkipOp("="))
        {
            var value = ParseTuple(withCondExpr: true);
            ExpectBlockEnd();
            return At(new SetStmt(target, value), start);
        }
        if (target.Unpack || target.Attribute is not null)
            throw Fail(Current, "a block set needs a single variable name");
        var filters = new List<FilterExpr>();
        while (SkipOp("|")) filters.Add(ParseFilter(null));
        ExpectBlockEnd();
        var body = Subparse(["endset"], out _);
        Next();
        ExpectBlockEnd();
        return At(new SetBlockStmt(target, filters, body), start);
    }

    private MacroStmt ParseMacro()
    {
        var start = Next(); // macro
        var name = ExpectName();
        ExpectOp("(");
        var parameters = new List<(string, Expr?)>();
        while (!Current.IsOp(")"))
        {
            if (parameters.Count > 0) ExpectOp(",");
            if (Current.IsOp(")")) break;
            var p = ExpectName();
            Expr? dflt = null;
            if (SkipOp("=")) dflt = ParseExpression(withCondExpr: true);
            else if (parameters.Any(x => x.Item2 is not null)) throw Fail(p, "non-default argument follows default argument");
            parameters.Add((p.Value, dflt));
        }
        ExpectOp(")");
        ExpectBlockEnd();
        int savedLoops = _loopDepth;
        _loopDepth = 0;
        _macroDepth++;
        var body = Subparse(["endmacro"], out _);
        _macroDepth--;
        _loopDepth = savedLoops;
        Next();
        if (Current.Kind == TokenKind.Name) Next(); // {% endmacro name %}
        ExpectBlockEnd();
        return At(new MacroStmt(name.Value, parameters, body), start);
    }

    private FilterBlockStmt ParseFilterBlock()
    {
        var start = Next(); // filter
        var filters = new List<FilterExpr> { ParseFilter(null) };
        while (SkipOp("|")) filters.Add(ParseFilter(null));
        ExpectBlockEnd();
        var body = Subparse(["endfilter"], out _);
        Next();
        ExpectBlockEnd();
        return At(new FilterBlockStmt(filters, body), start);
    }

    // ---------------------------------------------------------------- expressions

    /// <summary>An expression, or several separated by commas (a tuple without parentheses).</summary>
    private Expr ParseTuple(bool withCondExpr, string? stopAtName = null)
    {
        var start = Current;
        var items = new List<Expr>();
        bool comma = false;
        while (true)
        {
            if (items.Count > 0)
            {
                if (!SkipOp(",")) break;
                comma = true;
            }
            if (IsTupleEnd(stopAtName)) break;
            items.Add(ParseExpression(withCondExpr));
        }
        if (items.Count == 0) throw Fail(Current, $"expected an expression, got {Current.Describe()}");
        return !comma ? items[0] : At(new TupleExpr(items), start);
    }

    private bool IsTupleEnd(string? stopAtName) =>
        Current.Kind is TokenKind.VarEnd or TokenKind.BlockEnd or TokenKind.Eof ||
        Current.IsOp(")") || Current.IsOp("]") || Current.IsOp("}") ||
        (Current.Kind == TokenKind.Name && (Current.Value == stopAtName || (stopAtName is not null && Current.Value == "if")));

    private Expr ParseExpression(bool withCondExpr = true)
    {
        Enter();
        try { return withCondExpr ? ParseCondExpr() : ParseOr(); }
        finally { Leave(); }
    }

    private Expr ParseCondExpr()
    {
        var start = Current;
        var expr = ParseOr();
        while (SkipName("if"))
        {
            var test = ParseOr();
            Expr? otherwise = null;
            if (SkipName("else")) otherwise = ParseCondExpr();
            expr = At(new CondExpr(test, expr, otherwise), start);
        }
        return expr;
    }

    private Expr ParseOr()
    {
        var start = Current;
        var left = ParseAnd();
        while (SkipName("or")) left = At(new BinaryExpr("or", left, ParseAnd()), start);
        return left;
    }

    private Expr ParseAnd()
    {
        var start = Current;
        var left = ParseNot();
        while (SkipName("and")) left = At(new BinaryExpr("and", left, ParseNot()), start);
        return left;
    }

    private Expr ParseNot()
    {
        var start = Current;
        if (SkipName("not"))
        {
            Enter();
            try { return At(new UnaryExpr("not", ParseNot()), start); }
            finally { Leave(); }
        }
        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        var start = Current;
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            if (Current.Kind == TokenKind.Operator && CompareOps.Contains(Current.Value))
            {
                string op = Next().Value;
                rest.Add((op, ParseMath1()));
            }
            else if (SkipName("in")) rest.Add(("in", ParseMath1()));
            else if (Current.IsName("not") && Peek().IsName("in"))
            {
                Next();
                Next();
                rest.Add(("not in", ParseMath1()));
            }
            else break;
        }
        return rest.Count == 0 ? first : At(new CompareExpr(first, rest), start);
    }

    private Expr ParseMath1()
    {
        var start = Current;
        var left = ParseConcat();
        while (Current.IsOp("+") || Current.IsOp("-"))
        {
            string op = Next().Value;
            left = At(new BinaryExpr(op, left, ParseConcat()), start);
        }
        return left;
    }

    private Expr ParseConcat()
    {
        var start = Current;
        var left = ParseMath2();
        while (SkipOp("~")) left = At(new BinaryExpr("~", left, ParseMath2()), start);
        return left;
    }

    private Expr ParseMath2()
    {
        var start = Current;
        var left = ParsePow();
        while (Current.IsOp("*") || Current.IsOp("/") || Current.IsOp("//") || Current.IsOp("%"))
        {
            string op = Next().Value;
            left = At(new BinaryExpr(op, left, ParsePow()), start);
        }
        return left;
    }

    private Expr ParsePow()
    {
        var start = Current;
        var left = ParseUnary(withFilter: true);
        while (SkipOp("**")) left = At(new BinaryExpr("**", left, ParseUnary(withFilter: true)), start);
        return left;
    }

    private Expr ParseUnary(bool withFilter)
    {
        var start = Current;
        Expr node;
        if (Current.IsOp("-") || Current.IsOp("+"))
        {
            string op = Next().Value;
            Enter();
            try { node = At(new UnaryExpr(op, ParseUnary(withFilter: false)), start); }
            finally { Leave(); }
        }
        else node = ParsePrimary();
        node = ParsePostfix(node);
        if (withFilter) node = ParseFilterExpr(node);
        return node;
    }

    private Expr ParsePrimary()
    {
        var t = Current;
        switch (t.Kind)
        {
            case TokenKind.Name:
                Next();
                return t.Value switch
                {
                    "true" or "True" => At(new ConstExpr(true), t),
                    "false" or "False" => At(new ConstExpr(false), t),
                    "none" or "None" => At(new ConstExpr(null), t),
                    _ => At(new NameExpr(t.Value), t),
                };
            case TokenKind.String:
                {
                    Next();
                    string s = (string)t.Literal!;
                    while (Current.Kind == TokenKind.String) s += (string)Next().Literal!;
                    return At(new ConstExpr(s), t);
                }
            case TokenKind.Integer:
            case TokenKind.Float:
                Next();
                return At(new ConstExpr(t.Literal), t);
            case TokenKind.Operator when t.Value == "(":
                {
                    Next();
                    if (SkipOp(")")) return At(new TupleExpr([]), t);
                    var inner = ParseTuple(withCondExpr: true);
                    ExpectOp(")");
                    return inner;
                }
            case TokenKind.Operator when t.Value == "[":
                {
                    Next();
                    var items = new List<Expr>();
                    while (!Current.IsOp("]"))
                    {
                        if (items.Count > 0) ExpectOp(",");
                        if (Current.IsOp("]")) break;
                        items.Add(ParseExpression());
                    }
                    ExpectOp("]");
                    return At(new ListExpr(items), t);
                }
            case TokenKind.Operator when t.Value == "{":
                {
                    Next();
                    var items = new List<(Expr, Expr)>();
                    while (!Current.IsOp("}"))
                    {
                        if (items.Count > 0) ExpectOp(",");
                        if (Current.IsOp("}")) break;
                        var key = ParseExpression();
                        ExpectOp(":");
                        items.Add((key, ParseExpression()));
                    }
                    ExpectOp("}");
                    return At(new DictExpr(items), t);
                }
            default:
                throw Fail(t, $"unexpected {t.Describe()}");
        }
    }

    private Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            var t = Current;
            if (t.IsOp("."))
            {
                Next();
                var attr = Current;
                if (attr.Kind == TokenKind.Name) { Next(); node = At(new GetAttrExpr(node, attr.Value), t); }
                else if (attr.Kind == TokenKind.Integer) { Next(); node = At(new GetItemExpr(node, At(new ConstExpr(attr.Literal), attr)), t); }
                else throw Fail(attr, $"expected an attribute name after '.', got {attr.Describe()}");
            }
            else if (t.IsOp("["))
            {
                Next();
                node = ParseSubscript(node, t);
                ExpectOp("]");
            }
            else if (t.IsOp("("))
            {
                node = At(new CallExpr(node, ParseCallArgs()), t);
            }
            else return node;
        }
    }

    private Expr ParseSubscript(Expr obj, Token at)
    {
        Expr? start = null, stop = null, step = null;
        if (!Current.IsOp(":"))
        {
            var first = ParseExpression();
            if (!Current.IsOp(":"))
            {
                if (Current.IsOp(","))
                {
                    var items = new List<Expr> { first };
                    while (SkipOp(",") && !Current.IsOp("]")) items.Add(ParseExpression());
                    return At(new GetItemExpr(obj, At(new TupleExpr(items), at)), at);
                }
                return At(new GetItemExpr(obj, first), at);
            }
            start = first;
        }
        ExpectOp(":");
        if (!Current.IsOp("]") && !Current.IsOp(":")) stop = ParseExpression();
        if (SkipOp(":") && !Current.IsOp("]")) step = ParseExpression();
        return At(new SliceExpr(obj, start, stop, step), at);
    }

    private Arguments ParseCallArgs()
    {
        ExpectOp("(");
        var args = new Arguments();
        while (!Current.IsOp(")"))
        {
            if (args.Positional.Count + args.Named.Count > 0) ExpectOp(",");
            if (Current.IsOp(")")) break;
            if (Current.IsOp("*") || Current.IsOp("**")) throw Fail(Current, "*args and **kwargs in calls are not supported");
            if (Current.Kind == TokenKind.Name && Peek().IsOp("="))
            {
                string key = Next().Value;
                Next();
                args.Named.Add(new(key, ParseExpression()));
            }
            else
            {
                if (args.Named.Count > 0) throw Fail(Current, "positional argument follows keyword argument");
                args.Positional.Add(ParseExpression());
            }
        }
        ExpectOp(")");
        return args;
    }

    private Expr ParseFilterExpr(Expr node)
    {
        while (true)
        {
            if (Current.IsOp("|"))
            {
                Next();
                node = ParseFilter(node);
            }
            else if (Current.IsName("is"))
            {
                node = ParseTest(node);
            }
            else if (Current.IsOp("("))
            {
                var open = Current;
                node = At(new CallExpr(node, ParseCallArgs()), open);
            }
            else return node;
        }
    }

    private FilterExpr ParseFilter(Expr? operand)
    {
        var nameTok = ExpectName();
        string name = nameTok.Value;
        while (Current.IsOp(".") && Peek().Kind == TokenKind.Name)
        {
            Next();
            name += "." + Next().Value;
        }
        if (!Filters.Exists(name)) throw Fail(nameTok, $"no filter named '{name}'");
        var args = Current.IsOp("(") ? ParseCallArgs() : new Arguments();
        return At(new FilterExpr(operand, name, args), nameTok);
    }

    private Expr ParseTest(Expr operand)
    {
        var isTok = Next(); // is
        bool negated = SkipName("not");
        var nameTok = ExpectName();
        string name = nameTok.Value;
        // `is none`, `is true`, `is false` read their keyword as the test name
        if (!Tests.Exists(name)) throw Fail(nameTok, $"no test named '{name}'");
        var args = new Arguments();
        if (Current.IsOp("(")) args = ParseCallArgs();
        else if ((Current.Kind is TokenKind.Name or TokenKind.String or TokenKind.Integer or TokenKind.Float ||
                  Current.IsOp("[") || Current.IsOp("{")) &&
                 !(Current.IsName("else") || Current.IsName("or") || Current.IsName("and") || Current.IsName("if") ||
                   Current.IsName("in") || Current.IsName("not") || Current.IsName("recursive")))
        {
            if (Current.IsName("is")) throw Fail(Current, "you cannot chain multiple tests with 'is'");
            args.Positional.Add(ParsePostfix(ParsePrimary()));
        }
        return At(new TestExpr(operand, name, args, negated), isTok);
    }
}
