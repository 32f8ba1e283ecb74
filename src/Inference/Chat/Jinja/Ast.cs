namespace PiServe.Inference.Chat.Jinja;

internal abstract class AstNode
{
    public int Line { get; set; }
    public int Column { get; set; }
}

// ---------------------------------------------------------------- expressions

internal abstract class Expr : AstNode;

internal sealed class ConstExpr(object? value) : Expr { public object? Value { get; } = value; }
internal sealed class NameExpr(string name) : Expr { public string Name { get; } = name; }
internal sealed class GetAttrExpr(Expr obj, string name) : Expr { public Expr Obj { get; } = obj; public string Name { get; } = name; }
internal sealed class GetItemExpr(Expr obj, Expr key) : Expr { public Expr Obj { get; } = obj; public Expr Key { get; } = key; }

internal sealed class SliceExpr(Expr obj, Expr? start, Expr? stop, Expr? step) : Expr
{
    public Expr Obj { get; } = obj;
    public Expr? Start { get; } = start;
    public Expr? Stop { get; } = stop;
    public Expr? Step { get; } = step;
}

internal sealed class Arguments
{
    public List<Expr> Positional { get; } = [];
    public List<KeyValuePair<string, Expr>> Named { get; } = [];
}

internal sealed class CallExpr(Expr callee, Arguments args) : Expr
{
    public Expr Callee { get; } = callee;
    public Arguments Args { get; } = args;
}

/// <summary>operand | name(args). The operand is null for the filters of {% set x | f %} and {% filter %}.</summary>
internal sealed class FilterExpr(Expr? operand, string name, Arguments args) : Expr
{
    public Expr? Operand { get; } = operand;
    public string Name { get; } = name;
    public Arguments Args { get; } = args;
}

internal sealed class TestExpr(Expr operand, string name, Arguments args, bool negated) : Expr
{
    public Expr Operand { get; } = operand;
    public string Name { get; } = name;
    public Arguments Args { get; } = args;
    public bool Negated { get; } = negated;
}

/// <summary>"-", "+" or "not".</summary>
internal sealed class UnaryExpr(string op, Expr operand) : Expr { public string Op { get; } = op; public Expr Operand { get; } = operand; }

/// <summary>+ - * / // % ** ~ and the short-circuit "and" / "or".</summary>
internal sealed class BinaryExpr(string op, Expr left, Expr right) : Expr
{
    public string Op { get; } = op;
    public Expr Left { get; } = left;
    public Expr Right { get; } = right;
}

/// <summary>A chain a &lt; b &lt;= c: ops are == != &lt; &gt; &lt;= &gt;= in "not in".</summary>
internal sealed class CompareExpr(Expr first, List<(string Op, Expr Operand)> rest) : Expr
{
    public Expr First { get; } = first;
    public List<(string Op, Expr Operand)> Rest { get; } = rest;
}

internal sealed class CondExpr(Expr test, Expr then, Expr? otherwise) : Expr
{
    public Expr Test { get; } = test;
    public Expr Then { get; } = then;
    public Expr? Else { get; } = otherwise;
}

internal sealed class ListExpr(List<Expr> items) : Expr { public List<Expr> Items { get; } = items; }
internal sealed class TupleExpr(List<Expr> items) : Expr { public List<Expr> Items { get; } = items; }
internal sealed class DictExpr(List<(Expr Key, Expr Value)> items) : Expr { public List<(Expr Key, Expr Value)> Items { get; } = items; }

// ---------------------------------------------------------------- statements

internal abstract class Stmt : AstNode;

internal sealed class TextStmt(string text) : Stmt { public string Text { get; } = text; }
internal sealed class OutputStmt(Expr expr) : Stmt { public Expr Expr { get; } = expr; }

internal sealed class IfStmt(List<(Expr Test, List<Stmt> Body)> branches, List<Stmt>? otherwise) : Stmt
{
    public List<(Expr Test, List<Stmt> Body)> Branches { get; } = branches;
    public List<Stmt>? Else { get; } = otherwise;
}

/// <summary>The left side of for and set: a name, names to unpack, or namespace.attribute.</summary>
internal sealed class Target
{
    public List<string> Names { get; } = [];
    public bool Unpack { get; init; }
    public string? Attribute { get; init; }
}

internal sealed class ForStmt(Target target, Expr iterable, Expr? filter, List<Stmt> body, List<Stmt>? otherwise) : Stmt
{
    public Target Target { get; } = target;
    public Expr Iterable { get; } = iterable;
    public Expr? Filter { get; } = filter;
    public List<Stmt> Body { get; } = body;
    public List<Stmt>? Else { get; } = otherwise;
}

internal sealed class SetStmt(Target target, Expr value) : Stmt
{
    public Target Target { get; } = target;
    public Expr Value { get; } = value;
}

internal sealed class SetBlockStmt(Target target, List<FilterExpr> filters, List<Stmt> body) : Stmt
{
    public Target Target { get; } = target;
    public List<FilterExpr> Filters { get; } = filters;
    public List<Stmt> Body { get; } = body;
}

internal sealed class MacroStmt(string name, List<(string Name, Expr? Default)> parameters, List<Stmt> body) : Stmt
{
    public string Name { get; } = name;
    public List<(string Name, Expr? Default)> Parameters { get; } = parameters;
    public List<Stmt> Body { get; } = body;
}

internal sealed class FilterBlockStmt(List<FilterExpr> filters, List<Stmt> body) : Stmt
{
    public List<FilterExpr> Filters { get; } = filters;
    public List<Stmt> Body { get; } = body;
}

internal sealed class BreakStmt : Stmt;
internal sealed class ContinueStmt : Stmt;
