using System.Globalization;
using System.Text;

namespace PiServe.Inference.Chat.Jinja;

internal enum TokenKind { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Integer, Float, Operator, Eof }

internal readonly record struct Token(TokenKind Kind, string Value, int Line, int Column, object? Literal = null)
{
    public bool Is(TokenKind kind, string value) => Kind == kind && Value == value;
    public bool IsOp(string op) => Kind == TokenKind.Operator && Value == op;
    public bool IsName(string name) => Kind == TokenKind.Name && Value == name;

    public string Describe() => Kind switch
    {
        TokenKind.Eof => "end of template",
        TokenKind.Text => "template text",
        TokenKind.VarBegin => "'{{'",
        TokenKind.VarEnd => "'}}'",
        TokenKind.BlockBegin => "'{%'",
        TokenKind.BlockEnd => "'%}'",
        TokenKind.String => "string literal",
        TokenKind.Integer or TokenKind.Float => $"number {Value}",
        TokenKind.Name => $"'{Value}'",
        _ => $"'{Value}'",
    };
}

/// <summary>
/// Splits a template into tokens the way Jinja2 does with trim_blocks and lstrip_blocks (as transformers
/// configures it): newlines normalized to \n, one trailing newline dropped, '-' and '+' modifiers on tags.
/// </summary>
internal sealed class Lexer
{
    private static readonly string[] Operators =
        ["**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"];

    private readonly string _src;
    private readonly int[] _lineStarts;
    private readonly bool _trimBlocks;
    private readonly bool _lstripBlocks;
    private readonly List<Token> _tokens = [];
    private int _pos;

    private Lexer(string source, bool trimBlocks, bool lstripBlocks)
    {
        var sb = new StringBuilder(source.Length);
        for (int i = 0; i < source.Length; i++)
        {
            char c = source[i];
            if (c == '\r')
            {
                if (i + 1 < source.Length && source[i + 1] == '\n') i++;
                sb.Append('\n');
            }
            else sb.Append(c);
        }
        if (sb.Length > 0 && sb[^1] == '\n') sb.Length--;
        _src = sb.ToString();
        var starts = new List<int> { 0 };
        for (int i = 0; i < _src.Length; i++) if (_src[i] == '\n') starts.Add(i + 1);
        _lineStarts = [.. starts];
        _trimBlocks = trimBlocks;
        _lstripBlocks = lstripBlocks;
    }

    public static List<Token> Tokenize(string source, bool trimBlocks = true, bool lstripBlocks = true)
    {
        var lexer = new Lexer(source, trimBlocks, lstripBlocks);
        lexer.Run();
        return lexer._tokens;
    }

    private (int Line, int Column) Where(int pos)
    {
        int i = Array.BinarySearch(_lineStarts, pos);
        if (i < 0) i = ~i - 1;
        return (i + 1, pos - _lineStarts[i] + 1);
    }

    private JinjaSyntaxException Error(string message, int pos)
    {
        var (line, col) = Where(pos);
        return new JinjaSyntaxException(message, line, col);
    }

    private void Add(TokenKind kind, string value, int pos, object? literal = null)
    {
        var (line, col) = Where(pos);
        _tokens.Add(new Token(kind, value, line, col, literal));
    }

    private void Run()
    {
        bool lineStarting = true;
        int n = _src.Length;
        while (_pos < n)
        {
            int start = FindTagStart(_pos);
            if (start < 0)
            {
                Add(TokenKind.Text, _src[_pos..], _pos);
                break;
            }
            char kind = _src[start + 1];
            int p = start + 2;
            char mod = p < n && _src[p] is '-' or '+' ? _src[p] : '\0';
            string text = _src[_pos..start];
            if (mod == '-')
            {
                text = Py.Strip(text, null, left: false);
            }
            else if (mod != '+' && kind != '{' && _lstripBlocks)
            {
                int lpos = text.LastIndexOf('\n') + 1;
                if ((lpos > 0 || lineStarting) && AllSpace(text, lpos))
                    text = text[..lpos];
            }
            if (text.Length > 0) Add(TokenKind.Text, text, _pos);
            if (mod != '\0') p++;

            switch (kind)
            {
                case '#':
                    {
                        int end = _src.IndexOf("#}", p, StringComparison.Ordinal);
                        if (end < 0) throw Error("missing end of comment tag", start);
                        char endMod = end > p && _src[end - 1] is '-' or '+' ? _src[end - 1] : '\0';
                        _pos = end + 2;
                        lineStarting = AfterTagEnd(endMod);
                        break;
                    }
                case '%':
                    if (TryRaw(start, p, out lineStarting)) break;
                    Add(TokenKind.BlockBegin, "{%", start);
                    lineStarting = InsideTag(p, block: true);
                    break;
                default:
                    Add(TokenKind.VarBegin, "{{", start);
                    lineStarting = InsideTag(p, block: false);
                    break;
            }
        }
        Add(TokenKind.Eof, "", _src.Length);
    }

    private static bool AllSpace(string text, int from)
    {
        for (int i = from; i < text.Length; i++) if (!Py.IsSpace(text[i])) return false;
        return true;
    }

    private int FindTagStart(int from)
    {
        for (int i = _src.IndexOf('{', from); i >= 0 && i + 1 < _src.Length; i = _src.IndexOf('{', i + 1))
            if (_src[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    /// <summary>Consumes what follows a tag's end marker; true when that leaves us at a line start.</summary>
    private bool AfterTagEnd(char endMod, bool trims = true)
    {
        if (endMod == '-')
        {
            int s = _pos;
            while (_pos < _src.Length && Py.IsSpace(_src[_pos])) _pos++;
            return _pos > s && _src[_pos - 1] == '\n';
        }
        if (endMod != '+' && trims && _trimBlocks && _pos < _src.Length && _src[_pos] == '\n')
        {
            _pos++;
            return true;
        }
        return false;
    }

    /// <summary>{% raw %}...{% endraw %}: the body is text, untouched.</summary>
    private bool TryRaw(int start, int p, out bool lineStarting)
    {
        lineStarting = false;
        int i = p;
        while (i < _src.Length && Py.IsSpace(_src[i])) i++;
        if (string.CompareOrdinal(_src, i, "raw", 0, 3) != 0) return false;
        i += 3;
        while (i < _src.Length && Py.IsSpace(_src[i])) i++;
        char openMod = '\0';
        if (i < _src.Length && _src[i] is '-' or '+') openMod = _src[i++];
        if (string.CompareOrdinal(_src, i, "%}", 0, 2) != 0) return false;
        _pos = i + 2;
        // Unlike other block tags, {% raw %} keeps the newline after it (Jinja has no trim rule there).
        bool bodyAtLineStart = AfterTagEnd(openMod, trims: false);
        int bodyStart = _pos;
        for (int j = _src.IndexOf("{%", _pos, StringComparison.Ordinal); j >= 0; j = _src.IndexOf("{%", j + 2, StringComparison.Ordinal))
        {
            int k = j + 2;
            char mod = k < _src.Length && _src[k] is '-' or '+' ? _src[k++] : '\0';
            while (k < _src.Length && Py.IsSpace(_src[k])) k++;
            if (string.CompareOrdinal(_src, k, "endraw", 0, 6) != 0) continue;
            k += 6;
            while (k < _src.Length && Py.IsSpace(_src[k])) k++;
            char endMod = '\0';
            if (k < _src.Length && _src[k] is '-' or '+') endMod = _src[k++];
            if (string.CompareOrdinal(_src, k, "%}", 0, 2) != 0) continue;
            string body = _src[bodyStart..j];
            if (mod == '-') body = Py.Strip(body, null, left: false);
            else if (mod != '+' && _lstripBlocks)
            {
                int lpos = body.LastIndexOf('\n') + 1;
                if ((lpos > 0 || bodyAtLineStart) && AllSpace(body, lpos)) body = body[..lpos];
            }
            if (body.Length > 0) Add(TokenKind.Text, body, bodyStart);
            _pos = k + 2;
            lineStarting = AfterTagEnd(endMod);
            return true;
        }
        throw Error("missing {% endraw %} for this raw block", start);
    }

    /// <summary>Tokens of one {{ }} or {% %} up to its end marker; returns whether a line starts after it.</summary>
    private bool InsideTag(int p, bool block)
    {
        int n = _src.Length;
        var open = new Stack<char>();
        int i = p;
        while (true)
        {
            while (i < n && Py.IsSpace(_src[i])) i++;
            if (i >= n) throw Error(block ? "unexpected end of template inside a {% %} tag" : "unexpected end of template inside a {{ }} tag", i);
            char c = _src[i];

            if (open.Count == 0)
            {
                char endMod = c is '-' or '+' ? c : '\0';
                int e = endMod != '\0' ? i + 1 : i;
                if (block && string.CompareOrdinal(_src, e, "%}", 0, 2) == 0)
                {
                    Add(TokenKind.BlockEnd, "%}", i);
                    _pos = e + 2;
                    return AfterTagEnd(endMod);
                }
                if (!block && endMod != '+' && string.CompareOrdinal(_src, e, "}}", 0, 2) == 0)
                {
                    Add(TokenKind.VarEnd, "}}", i);
                    _pos = e + 2;
                    return AfterTagEnd(endMod, trims: false);
                }
            }

            if (char.IsLetter(c) || c == '_')
            {
                int s = i;
                while (i < n && (char.IsLetterOrDigit(_src[i]) || _src[i] == '_')) i++;
                Add(TokenKind.Name, _src[s..i], s);
                continue;
            }
            if (char.IsAsciiDigit(c))
            {
                i = Number(i);
                continue;
            }
            if (c is '\'' or '"')
            {
                i = StringLiteral(i);
                continue;
            }
            string? op = null;
            foreach (var candidate in Operators)
                if (string.CompareOrdinal(_src, i, candidate, 0, candidate.Length) == 0) { op = candidate; break; }
            if (op is null) throw Error($"unexpected character '{c}'", i);
            if (op is "(" or "[" or "{") open.Push(op switch { "(" => ')', "[" => ']', _ => '}' });
            else if (op is ")" or "]" or "}")
            {
                if (open.Count == 0) throw Error($"unexpected '{op}'", i);
                char expected = open.Pop();
                if (op[0] != expected) throw Error($"unexpected '{op}', expected '{expected}'", i);
            }
            Add(TokenKind.Operator, op, i);
            i += op.Length;
        }
    }

    private int Number(int i)
    {
        int s = i, n = _src.Length;
        bool afterDot = s > 0 && _src[s - 1] == '.';
        if (_src[i] == '0' && i + 1 < n && _src[i + 1] is 'x' or 'X' or 'o' or 'O' or 'b' or 'B')
        {
            int radix = char.ToLowerInvariant(_src[i + 1]) switch { 'x' => 16, 'o' => 8, _ => 2 };
            i += 2;
            int ds = i;
            while (i < n && (Uri.IsHexDigit(_src[i]) || _src[i] == '_')) i++;
            string digits = _src[ds..i].Replace("_", "");
            try
            {
                Add(TokenKind.Integer, _src[s..i], s, Convert.ToInt64(digits, radix));
            }
            catch (Exception ex) when (ex is FormatException or ArgumentException or OverflowException)
            {
                throw Error($"invalid number literal '{_src[s..i]}'", s);
            }
            return i;
        }
        Digits(ref i);
        bool isFloat = false;
        if (!afterDot && i + 1 < n && _src[i] == '.' && char.IsAsciiDigit(_src[i + 1]))
        {
            i++;
            Digits(ref i);
            isFloat = true;
        }
        if (!afterDot && i < n && _src[i] is 'e' or 'E')
        {
            int j = i + 1;
            if (j < n && _src[j] is '+' or '-') j++;
            if (j < n && char.IsAsciiDigit(_src[j]))
            {
                i = j;
                Digits(ref i);
                isFloat = true;
            }
        }
        string text = _src[s..i].Replace("_", "");
        if (isFloat)
            Add(TokenKind.Float, text, s, double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture));
        else if (long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long l))
            Add(TokenKind.Integer, text, s, l);
        else
            throw Error($"integer literal too large: {text}", s);
        return i;
    }

    private void Digits(ref int i)
    {
        while (i < _src.Length && (char.IsAsciiDigit(_src[i]) || (_src[i] == '_' && i + 1 < _src.Length && char.IsAsciiDigit(_src[i + 1])))) i++;
    }

    /// <summary>A quoted string with Python's escapes (\n, \t, \xhh, \uhhhh, ...); unknown escapes stay as written.</summary>
    private int StringLiteral(int i)
    {
        int s = i;
        char quote = _src[i++];
        var sb = new StringBuilder();
        while (true)
        {
            if (i >= _src.Length) throw Error("unterminated string literal", s);
            char c = _src[i];
            if (c == quote) { i++; break; }
            if (c != '\\') { sb.Append(c); i++; continue; }
            if (i + 1 >= _src.Length) throw Error("unterminated string literal", s);
            char e = _src[i + 1];
            i += 2;
            switch (e)
            {
                case '\n': break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 't': sb.Append('\t'); break;
                case 'v': sb.Append('\v'); break;
                case >= '0' and <= '7':
                    {
                        int v = e - '0';
                        for (int k = 0; k < 2 && i < _src.Length && _src[i] is >= '0' and <= '7'; k++) v = v * 8 + (_src[i++] - '0');
                        sb.Append((char)v);
                        break;
                    }
                case 'x':
                case 'u':
                case 'U':
                    {
                        int len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                        if (i + len > _src.Length || !int.TryParse(_src.AsSpan(i, len), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int cp))
                            throw Error($"truncated \\{e} escape in string literal", i - 2);
                        if (cp > 0x10FFFF) throw Error($"illegal Unicode character in \\{e} escape", i - 2);
                        sb.Append(cp < 0x10000 ? ((char)cp).ToString() : char.ConvertFromUtf32(cp));
                        i += len;
                        break;
                    }
                default:
                    sb.Append('\\').Append(e);
                    break;
            }
        }
        Add(TokenKind.String, _src[s..i], s, sb.ToString());
        return i;
    }
}
