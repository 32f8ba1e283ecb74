using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace PiServe.Inference.Tokenization;

/// <summary>
/// Translates the Oniguruma (Ruby syntax) patterns used in tokenizer.json into equivalent .NET patterns.
/// <para>
/// .NET matches UTF-16 code units, Oniguruma (used by HF tokenizers) matches code points. A plain
/// <c>\p{L}</c> in .NET therefore never matches a supplementary letter (e.g. 𝐀 or 𠀀), and a negated class
/// like <c>[^\s\p{L}]</c> would match half of a surrogate pair. The translator replaces every character
/// class, property escape, shorthand (\s \d \w \h) and '.' by an explicit code-point set: BMP ranges plus
/// surrogate-pair alternatives. Sets use Oniguruma's Unicode definitions (\s = White_Space,
/// \d = Nd, \w = L|M|Nd|Pc). '^' and '$' are line anchors (Ruby syntax), possessive quantifiers become
/// atomic groups, <c>{,n}</c> becomes <c>{0,n}</c>. Anything else that cannot be reproduced exactly
/// (scripts, POSIX brackets, nested classes, intersections, \R, \X, ...) is rejected with a FormatException.
/// </para>
/// Input strings must not contain lone surrogates (the tokenizer replaces them with U+FFFD first).
/// </summary>
internal static class OnigRegex
{
    /// <summary>
    /// Translates and compiles <paramref name="pattern"/>. Two .NET regexes are built: one for inputs without
    /// surrogates (classes are plain BMP ranges, which .NET loops over much faster) and, lazily, the full one.
    /// </summary>
    public static OnigPattern Compile(string pattern)
    {
        string bmp = new Translator(pattern, bmpOnly: true).Run();
        string full = new Translator(pattern, bmpOnly: false).Run(); // translate eagerly: errors surface at load
        return new OnigPattern(CompileNet(bmp), new Lazy<Regex>(() => CompileNet(full)));
    }

    private static Regex CompileNet(string translated)
    {
        try
        {
            return new Regex(translated, RegexOptions.CultureInvariant | RegexOptions.Multiline | RegexOptions.Compiled);
        }
        catch (ArgumentException e)
        {
            throw new FormatException($"pattern cannot be compiled: {e.Message}", e);
        }
    }

    public static string Translate(string pattern, bool bmpOnly = false) => new Translator(pattern, bmpOnly).Run();

    // ---- Unicode data -------------------------------------------------------------------------

    private const int MaxCodePoint = 0x10FFFF;
    private static byte[]? s_categories;

    private static byte[] Categories
    {
        get
        {
            if (s_categories is { } c) return c;
            var cats = new byte[MaxCodePoint + 1];
            for (int cp = 0; cp <= MaxCodePoint; cp++)
                cats[cp] = (byte)CharUnicodeInfo.GetUnicodeCategory(cp);
            return s_categories = cats;
        }
    }

    private static readonly ConcurrentDictionary<string, string> s_emitted = new();

    /// <summary>Oniguruma's \s with Unicode: the White_Space property.</summary>
    internal static bool IsOnigSpace(int cp) => cp switch
    {
        >= 0x09 and <= 0x0D => true,
        0x20 or 0x85 or 0xA0 or 0x1680 => true,
        >= 0x2000 and <= 0x200A => true,
        0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000 => true,
        _ => false,
    };

    /// <summary>Oniguruma's \w with Unicode: Letter, Mark, Decimal_Number, Connector_Punctuation.</summary>
    internal static bool IsOnigWord(int cp)
    {
        var c = (UnicodeCategory)Categories[cp];
        return c is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
            or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter or UnicodeCategory.NonSpacingMark
            or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark or UnicodeCategory.DecimalDigitNumber
            or UnicodeCategory.ConnectorPunctuation;
    }

    private static readonly Dictionary<string, UnicodeCategory[]> s_propertyCategories = BuildPropertyTable();

    private static Dictionary<string, UnicodeCategory[]> BuildPropertyTable()
    {
        var t = new Dictionary<string, UnicodeCategory[]>(StringComparer.OrdinalIgnoreCase);
        void Add(UnicodeCategory[] cats, params string[] names)
        {
            foreach (var n in names) t[n] = cats;
        }
        UnicodeCategory[] C(params UnicodeCategory[] c) => c;
        var L = C(UnicodeCategory.UppercaseLetter, UnicodeCategory.LowercaseLetter, UnicodeCategory.TitlecaseLetter,
            UnicodeCategory.ModifierLetter, UnicodeCategory.OtherLetter);
        var M = C(UnicodeCategory.NonSpacingMark, UnicodeCategory.SpacingCombiningMark, UnicodeCategory.EnclosingMark);
        var N = C(UnicodeCategory.DecimalDigitNumber, UnicodeCategory.LetterNumber, UnicodeCategory.OtherNumber);
        var P = C(UnicodeCategory.ConnectorPunctuation, UnicodeCategory.DashPunctuation, UnicodeCategory.OpenPunctuation,
            UnicodeCategory.ClosePunctuation, UnicodeCategory.InitialQuotePunctuation, UnicodeCategory.FinalQuotePunctuation,
            UnicodeCategory.OtherPunctuation);
        var S = C(UnicodeCategory.MathSymbol, UnicodeCategory.CurrencySymbol, UnicodeCategory.ModifierSymbol, UnicodeCategory.OtherSymbol);
        var Z = C(UnicodeCategory.SpaceSeparator, UnicodeCategory.LineSeparator, UnicodeCategory.ParagraphSeparator);
        var Cc = C(UnicodeCategory.Control, UnicodeCategory.Format, UnicodeCategory.Surrogate, UnicodeCategory.PrivateUse,
            UnicodeCategory.OtherNotAssigned);
        Add(L, "L", "Letter");
        Add(C(UnicodeCategory.UppercaseLetter), "Lu", "Uppercase_Letter");
        Add(C(UnicodeCategory.LowercaseLetter), "Ll", "Lowercase_Letter");
        Add(C(UnicodeCategory.TitlecaseLetter), "Lt", "Titlecase_Letter");
        Add(C(UnicodeCategory.ModifierLetter), "Lm", "Modifier_Letter");
        Add(C(UnicodeCategory.OtherLetter), "Lo", "Other_Letter");
        Add(C(UnicodeCategory.UppercaseLetter, UnicodeCategory.LowercaseLetter, UnicodeCategory.TitlecaseLetter), "LC", "Cased_Letter");
        Add(M, "M", "Mark", "Combining_Mark");
        Add(C(UnicodeCategory.NonSpacingMark), "Mn", "Nonspacing_Mark");
        Add(C(UnicodeCategory.SpacingCombiningMark), "Mc", "Spacing_Mark");
        Add(C(UnicodeCategory.EnclosingMark), "Me", "Enclosing_Mark");
        Add(N, "N", "Number");
        Add(C(UnicodeCategory.DecimalDigitNumber), "Nd", "Decimal_Number", "Digit");
        Add(C(UnicodeCategory.LetterNumber), "Nl", "Letter_Number");
        Add(C(UnicodeCategory.OtherNumber), "No", "Other_Number");
        Add(P, "P", "Punctuation", "Punct");
        Add(C(UnicodeCategory.ConnectorPunctuation), "Pc", "Connector_Punctuation");
        Add(C(UnicodeCategory.DashPunctuation), "Pd", "Dash_Punctuation");
        Add(C(UnicodeCategory.OpenPunctuation), "Ps", "Open_Punctuation");
        Add(C(UnicodeCategory.ClosePunctuation), "Pe", "Close_Punctuation");
        Add(C(UnicodeCategory.InitialQuotePunctuation), "Pi", "Initial_Punctuation");
        Add(C(UnicodeCategory.FinalQuotePunctuation), "Pf", "Final_Punctuation");
        Add(C(UnicodeCategory.OtherPunctuation), "Po", "Other_Punctuation");
        Add(S, "S", "Symbol");
        Add(C(UnicodeCategory.MathSymbol), "Sm", "Math_Symbol");
        Add(C(UnicodeCategory.CurrencySymbol), "Sc", "Currency_Symbol");
        Add(C(UnicodeCategory.ModifierSymbol), "Sk", "Modifier_Symbol");
        Add(C(UnicodeCategory.OtherSymbol), "So", "Other_Symbol");
        Add(Z, "Z", "Separator");
        Add(C(UnicodeCategory.SpaceSeparator), "Zs", "Space_Separator");
        Add(C(UnicodeCategory.LineSeparator), "Zl", "Line_Separator");
        Add(C(UnicodeCategory.ParagraphSeparator), "Zp", "Paragraph_Separator");
        Add(Cc, "C", "Other");
        Add(C(UnicodeCategory.Control), "Cc", "Control", "Cntrl");
        Add(C(UnicodeCategory.Format), "Cf", "Format");
        Add(C(UnicodeCategory.PrivateUse), "Co", "Private_Use");
        Add(C(UnicodeCategory.OtherNotAssigned), "Cn", "Unassigned");
        return t;
    }

    // ---- code point sets ----------------------------------------------------------------------

    private sealed class CodePointSet
    {
        public readonly bool[] Bits = new bool[MaxCodePoint + 1];

        public void AddRange(int lo, int hi)
        {
            for (int cp = lo; cp <= hi; cp++) Bits[cp] = true;
        }

        public void AddCategories(UnicodeCategory[] cats, bool negate)
        {
            var table = Categories;
            Span<bool> wanted = stackalloc bool[32];
            foreach (var c in cats) wanted[(int)c] = true;
            for (int cp = 0; cp <= MaxCodePoint; cp++)
                if (wanted[table[cp]] != negate) Bits[cp] = true;
        }

        public void AddPredicate(Func<int, bool> pred, bool negate)
        {
            for (int cp = 0; cp <= MaxCodePoint; cp++)
                if (pred(cp) != negate) Bits[cp] = true;
        }

        public void AddSimpleCaseVariants()
        {
            var extra = new List<int>();
            for (int cp = 0; cp <= MaxCodePoint; cp++)
            {
                if (!Bits[cp] || cp is >= 0xD800 and <= 0xDFFF) continue;
                string s = char.ConvertFromUtf32(cp);
                foreach (var v in new[] { s.ToUpperInvariant(), s.ToLowerInvariant() })
                {
                    if (v == s) continue;
                    if (v.Length == 1 || (v.Length == 2 && char.IsSurrogatePair(v[0], v[1])))
                        extra.Add(char.ConvertToUtf32(v, 0));
                }
            }
            foreach (var cp in extra) Bits[cp] = true;
        }

        public void Complement()
        {
            for (int cp = 0; cp <= MaxCodePoint; cp++) Bits[cp] = !Bits[cp];
        }

        /// <summary>Emits a .NET sub-pattern that matches exactly one code point of the set.</summary>
        public string Emit(bool bmpOnly)
        {
            for (int cp = 0xD800; cp <= 0xDFFF; cp++) Bits[cp] = false; // never match half a pair
            var alternatives = new List<string>();

            var bmp = new StringBuilder();
            foreach (var (lo, hi) in Ranges(0, 0xFFFF))
                AppendRange(bmp, lo, hi);
            if (bmp.Length > 0) alternatives.Add("[" + bmp + "]");
            if (bmpOnly) return bmp.Length > 0 ? alternatives[0] : "(?!)";

            // Supplementary planes: group by high surrogate, merging runs of highs with identical low-sets.
            string? pendingLows = null;
            int pendingFrom = 0, pendingTo = 0;
            void FlushPending()
            {
                if (pendingLows is null) return;
                string highs = pendingFrom == pendingTo ? Esc(pendingFrom) : $"[{Esc(pendingFrom)}-{Esc(pendingTo)}]";
                alternatives.Add(highs + pendingLows);
                pendingLows = null;
            }
            for (int high = 0xD800; high <= 0xDBFF; high++)
            {
                int baseCp = 0x10000 + ((high - 0xD800) << 10);
                var lows = new StringBuilder();
                foreach (var (lo, hi) in Ranges(baseCp, baseCp + 0x3FF))
                    AppendRange(lows, 0xDC00 + (lo - baseCp), 0xDC00 + (hi - baseCp));
                string? key = lows.Length == 0 ? null : "[" + lows + "]";
                if (key is not null && key == pendingLows && pendingTo == high - 1)
                {
                    pendingTo = high;
                    continue;
                }
                FlushPending();
                if (key is not null)
                {
                    pendingLows = key;
                    pendingFrom = pendingTo = high;
                }
            }
            FlushPending();

            return alternatives.Count switch
            {
                0 => "(?!)",
                1 when bmp.Length > 0 => alternatives[0],
                _ => "(?:" + string.Join("|", alternatives) + ")",
            };
        }

        private IEnumerable<(int Lo, int Hi)> Ranges(int from, int to)
        {
            int cp = from;
            while (cp <= to)
            {
                if (!Bits[cp]) { cp++; continue; }
                int start = cp;
                while (cp + 1 <= to && Bits[cp + 1]) cp++;
                yield return (start, cp);
                cp++;
            }
        }

        private static void AppendRange(StringBuilder sb, int lo, int hi)
        {
            sb.Append(Esc(lo));
            if (hi > lo)
            {
                if (hi > lo + 1) sb.Append('-');
                sb.Append(Esc(hi));
            }
        }
    }

    private static string Esc(int unit) => "\\u" + unit.ToString("X4");

    private static string EscapeCodePoint(int cp)
    {
        if (cp <= 0xFFFF) return Esc(cp);
        string s = char.ConvertFromUtf32(cp);
        return "(?:" + Esc(s[0]) + Esc(s[1]) + ")";
    }

    // ---- the translator -----------------------------------------------------------------------

    private sealed class Translator
    {
        private readonly string _p;
        private int _i;
        private readonly StringBuilder _out = new();
        private bool _ignoreCase;
        private readonly Stack<(bool IgnoreCase, int OutStart)> _groups = new();
        private int _lastAtomStart = -1; // start in _out of the last quantifiable atom, -1 if none

        private readonly bool _bmpOnly;

        public Translator(string pattern, bool bmpOnly)
        {
            _p = pattern;
            _bmpOnly = bmpOnly;
        }

        private FormatException Fail(string what) =>
            new($"unsupported regex construct {what} at index {_i} in pattern \"{_p}\"");

        public string Run()
        {
            while (_i < _p.Length)
            {
                char c = _p[_i];
                switch (c)
                {
                    case '\\':
                        EscapeOutsideClass();
                        break;
                    case '[':
                    {
                        int start = _i;
                        var set = ParseClass();
                        EmitAtom(EmitSet(set, _p.Substring(start, _i - start)));
                        break;
                    }
                    case '.':
                        _i++;
                        EmitAtom(CachedSet(".", s => s.AddPredicate(cp => cp != '\n', false)));
                        break;
                    case '(':
                        OpenGroup();
                        break;
                    case ')':
                        if (_groups.Count == 0) throw Fail("unbalanced ')'");
                        var (ic, outStart) = _groups.Pop();
                        _ignoreCase = ic;
                        _out.Append(')');
                        _i++;
                        _lastAtomStart = outStart;
                        break;
                    case '*':
                    case '+':
                    case '?':
                        Quantifier(c.ToString(), 1);
                        break;
                    case '{':
                        if (TryParseInterval(out string interval, out int len))
                            Quantifier(interval, len);
                        else
                        {
                            _i++;
                            EmitAtom("\\{");
                        }
                        break;
                    case '}':
                        _i++;
                        EmitAtom("\\}");
                        break;
                    case '|':
                        _i++;
                        _out.Append('|');
                        _lastAtomStart = -1;
                        break;
                    case '^':
                    case '$':
                        _i++;
                        _out.Append(c);
                        _lastAtomStart = -1;
                        break;
                    case ' ':
                    case '#':
                        _i++;
                        EmitAtom("\\" + c); // keep literal even if someone adds IgnorePatternWhitespace
                        break;
                    default:
                    {
                        int cp = CodePoints.At(_p, _i, out int units);
                        _i += units;
                        EmitAtom(EscapeCodePoint(cp));
                        break;
                    }
                }
            }
            if (_groups.Count != 0) throw Fail("unbalanced '('");
            return _out.ToString();
        }

        private void EmitAtom(string s)
        {
            _lastAtomStart = _out.Length;
            _out.Append(s);
        }

        private void Quantifier(string q, int consumed)
        {
            if (_lastAtomStart < 0) throw Fail($"quantifier '{q}' without operand");
            _i += consumed;
            string atom = _out.ToString(_lastAtomStart, _out.Length - _lastAtomStart);
            _out.Length = _lastAtomStart;
            bool isInterval = q.StartsWith('{');
            if (_i < _p.Length && _p[_i] == '+')
            {
                _i++;
                if (isInterval)
                    _out.Append("(?:").Append(atom).Append(q).Append(")+"); // Ruby: X{n}+ is (?:X{n})+
                else
                    _out.Append("(?>").Append(atom).Append(q).Append(')');   // possessive
            }
            else if (_i < _p.Length && _p[_i] == '?')
            {
                _i++;
                _out.Append(atom).Append(q).Append('?'); // lazy
            }
            else
            {
                _out.Append(atom).Append(q);
            }
            // A quantified atom can be quantified again in Ruby syntax ("a**"); wrap so .NET accepts it.
            string full = _out.ToString(_lastAtomStart, _out.Length - _lastAtomStart);
            if (_i < _p.Length && (_p[_i] is '*' or '+' or '?' || (_p[_i] == '{' && TryParseInterval(out _, out _))))
            {
                _out.Length = _lastAtomStart;
                _out.Append("(?:").Append(full).Append(')');
            }
        }

        private bool TryParseInterval(out string interval, out int length)
        {
            // {n}, {n,}, {n,m}, {,m}
            interval = "";
            length = 0;
            int j = _i + 1;
            int startDigits = j;
            while (j < _p.Length && char.IsAsciiDigit(_p[j])) j++;
            string lo = _p[startDigits..j];
            string? hi = null;
            bool comma = false;
            if (j < _p.Length && _p[j] == ',')
            {
                comma = true;
                j++;
                int hs = j;
                while (j < _p.Length && char.IsAsciiDigit(_p[j])) j++;
                hi = _p[hs..j];
            }
            if (j >= _p.Length || _p[j] != '}') return false;
            if (lo.Length == 0 && (hi is null || hi.Length == 0)) return false;
            length = j + 1 - _i;
            if (lo.Length == 0) lo = "0";
            interval = comma ? $"{{{lo},{hi}}}" : $"{{{lo}}}";
            return true;
        }

        private void OpenGroup()
        {
            int outStart = _out.Length;
            if (_i + 1 < _p.Length && _p[_i + 1] == '?')
            {
                int j = _i + 2;
                if (j >= _p.Length) throw Fail("'(?'");
                char k = _p[j];
                if (k == '#')
                {
                    int end = _p.IndexOf(')', j);
                    if (end < 0) throw Fail("unterminated comment");
                    _i = end + 1;
                    return;
                }
                if (k is ':' or '=' or '!' or '>')
                {
                    _groups.Push((_ignoreCase, outStart));
                    _out.Append("(?").Append(k);
                    _i = j + 1;
                    _lastAtomStart = -1;
                    return;
                }
                if (k == '<' && j + 1 < _p.Length && _p[j + 1] is '=' or '!')
                {
                    _groups.Push((_ignoreCase, outStart));
                    _out.Append("(?<").Append(_p[j + 1]);
                    _i = j + 2;
                    _lastAtomStart = -1;
                    return;
                }
                if (k is '<' or '\'')
                {
                    char close = k == '<' ? '>' : '\'';
                    int end = _p.IndexOf(close, j + 1);
                    if (end < 0) throw Fail("unterminated group name");
                    _groups.Push((_ignoreCase, outStart));
                    _out.Append("(?<").Append(_p, j + 1, end - j - 1).Append('>');
                    _i = end + 1;
                    _lastAtomStart = -1;
                    return;
                }
                // option groups: (?i) (?-i) (?i:...) (?-i:...)
                bool on = true, newIc = _ignoreCase;
                int m = j;
                var flags = new StringBuilder();
                while (m < _p.Length && _p[m] is 'i' or '-')
                {
                    if (_p[m] == '-') on = false;
                    else newIc = on;
                    flags.Append(_p[m]);
                    m++;
                }
                if (m < _p.Length && flags.Length > 0 && _p[m] is ':' or ')')
                {
                    if (_p[m] == ':')
                    {
                        _groups.Push((_ignoreCase, outStart));
                        _out.Append("(?").Append(newIc ? "i" : "-i").Append(':');
                    }
                    else
                    {
                        _out.Append("(?").Append(newIc ? "i" : "-i").Append(')');
                    }
                    _ignoreCase = newIc;
                    _i = m + 1;
                    _lastAtomStart = -1;
                    return;
                }
                throw Fail($"group '(?{k}'");
            }
            _groups.Push((_ignoreCase, outStart));
            _out.Append('(');
            _i++;
            _lastAtomStart = -1;
        }

        private void EscapeOutsideClass()
        {
            if (_i + 1 >= _p.Length) throw Fail("trailing backslash");
            char e = _p[_i + 1];
            switch (e)
            {
                case 'b' or 'B' or 'A' or 'z' or 'Z' or 'G':
                    _out.Append('\\').Append(e);
                    _i += 2;
                    _lastAtomStart = -1;
                    return;
                case >= '1' and <= '9':
                {
                    int j = _i + 1;
                    while (j < _p.Length && char.IsAsciiDigit(_p[j])) j++;
                    EmitAtom(_p[_i..j]);
                    _i = j;
                    return;
                }
                case 'k':
                {
                    int end = _p.IndexOf('>', _i);
                    if (_i + 2 >= _p.Length || _p[_i + 2] != '<' || end < 0) throw Fail("\\k");
                    EmitAtom(_p[_i..(end + 1)]);
                    _i = end + 1;
                    return;
                }
            }
            int start = _i;
            var item = ParseEscape(inClass: false);
            if (item.Set is { } set)
                EmitAtom(EmitSet(set, _p[start.._i] + (_ignoreCase ? "/i" : "")));
            else
                EmitAtom(EscapeCodePoint(item.CodePoint));
        }

        private readonly record struct EscapeItem(int CodePoint, Action<CodePointSet>? Set);

        /// <summary>Parses an escape at _i (pointing at the backslash): a single code point or a set.</summary>
        private EscapeItem ParseEscape(bool inClass)
        {
            char e = _p[_i + 1];
            _i += 2;
            switch (e)
            {
                case 'n': return new('\n', null);
                case 'r': return new('\r', null);
                case 't': return new('\t', null);
                case 'f': return new('\f', null);
                case 'v': return new('\v', null);
                case 'a': return new('\a', null);
                case 'e': return new(0x1B, null);
                case 'b' when inClass: return new('\b', null);
                case '0':
                {
                    int v = 0, n = 0;
                    while (n < 2 && _i < _p.Length && _p[_i] is >= '0' and <= '7') { v = v * 8 + (_p[_i] - '0'); _i++; n++; }
                    return new(v, null);
                }
                case 'x':
                {
                    if (_i < _p.Length && _p[_i] == '{')
                    {
                        int end = _p.IndexOf('}', _i);
                        if (end < 0) throw Fail("\\x{");
                        int cp = int.Parse(_p.AsSpan(_i + 1, end - _i - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                        _i = end + 1;
                        if (cp > MaxCodePoint) throw Fail("\\x{} out of range");
                        return new(cp, null);
                    }
                    int j = _i;
                    while (j < _p.Length && j < _i + 2 && char.IsAsciiHexDigit(_p[j])) j++;
                    if (j == _i) throw Fail("\\x");
                    int v = int.Parse(_p.AsSpan(_i, j - _i), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                    _i = j;
                    return new(v, null);
                }
                case 'u':
                {
                    if (_i + 4 > _p.Length) throw Fail("\\u");
                    int v = int.Parse(_p.AsSpan(_i, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                    _i += 4;
                    return new(v, null);
                }
                case 'd': return new(0, s => s.AddCategories(s_propertyCategories["Nd"], false));
                case 'D': return new(0, s => s.AddCategories(s_propertyCategories["Nd"], true));
                case 's': return new(0, s => s.AddPredicate(IsOnigSpace, false));
                case 'S': return new(0, s => s.AddPredicate(IsOnigSpace, true));
                case 'w': return new(0, s => s.AddPredicate(IsOnigWord, false));
                case 'W': return new(0, s => s.AddPredicate(IsOnigWord, true));
                case 'h': return new(0, s => s.AddPredicate(cp => cp < 128 && char.IsAsciiHexDigit((char)cp), false));
                case 'H': return new(0, s => s.AddPredicate(cp => cp < 128 && char.IsAsciiHexDigit((char)cp), true));
                case 'p':
                case 'P':
                {
                    bool negate = e == 'P';
                    string name;
                    if (_i < _p.Length && _p[_i] == '{')
                    {
                        int end = _p.IndexOf('}', _i);
                        if (end < 0) throw Fail("\\p{");
                        name = _p.Substring(_i + 1, end - _i - 1);
                        _i = end + 1;
                    }
                    else if (_i < _p.Length)
                    {
                        name = _p[_i].ToString();
                        _i++;
                    }
                    else throw Fail("\\p");
                    if (name.StartsWith('^'))
                    {
                        negate = !negate;
                        name = name[1..];
                    }
                    string key = name.Replace(" ", "").Replace("-", "_");
                    if (s_propertyCategories.TryGetValue(key, out var cats))
                        return new(0, s => s.AddCategories(cats, negate));
                    switch (key.ToLowerInvariant())
                    {
                        case "any": return new(0, s => s.AddPredicate(_ => true, negate));
                        case "space": case "white_space": return new(0, s => s.AddPredicate(IsOnigSpace, negate));
                        case "word": return new(0, s => s.AddPredicate(IsOnigWord, negate));
                        case "ascii": return new(0, s => s.AddPredicate(cp => cp < 128, negate));
                    }
                    // Scripts (Han, Latin, ...) and binary properties (Alphabetic, ...) have no .NET data source.
                    throw Fail($"\\p{{{name}}} (Unicode scripts and binary properties are not supported)");
                }
                case 'R' or 'X' or 'K' or 'N' or 'O' or 'g' or 'y' or 'Y':
                    _i -= 2;
                    throw Fail("\\" + e);
                default:
                    if (char.IsAsciiLetterOrDigit(e))
                    {
                        _i -= 2;
                        throw Fail("\\" + e);
                    }
                    // escaped literal (punctuation, or a non-ASCII character)
                    _i -= 1;
                    int cp2 = CodePoints.At(_p, _i, out int units);
                    _i += units;
                    return new(cp2, null);
            }
        }

        private CodePointSet ParseClass()
        {
            int classStart = _i;
            _i++; // [
            var set = new CodePointSet();
            bool negate = false;
            if (_i < _p.Length && _p[_i] == '^')
            {
                negate = true;
                _i++;
            }
            bool first = true;
            while (true)
            {
                if (_i >= _p.Length)
                {
                    _i = classStart;
                    throw Fail("unterminated character class");
                }
                char c = _p[_i];
                if (c == ']' && !first)
                {
                    _i++;
                    break;
                }
                first = false;
                if (c == '[') throw Fail("nested character class / POSIX bracket");
                if (c == '&' && _i + 1 < _p.Length && _p[_i + 1] == '&') throw Fail("character class intersection '&&'");

                int lo;
                if (c == '\\')
                {
                    var item = ParseEscape(inClass: true);
                    if (item.Set is { } addSet)
                    {
                        addSet(set);
                        continue;
                    }
                    lo = item.CodePoint;
                }
                else
                {
                    lo = CodePoints.At(_p, _i, out int units);
                    _i += units;
                }
                // range?
                if (_i + 1 < _p.Length && _p[_i] == '-' && _p[_i + 1] != ']')
                {
                    _i++;
                    int hi;
                    if (_p[_i] == '\\')
                    {
                        var item = ParseEscape(inClass: true);
                        if (item.Set is not null) throw Fail("range ending in a character set");
                        hi = item.CodePoint;
                    }
                    else if (_p[_i] == '[')
                        throw Fail("range ending in a character class");
                    else
                    {
                        hi = CodePoints.At(_p, _i, out int units);
                        _i += units;
                    }
                    if (hi < lo) throw Fail("empty range in character class");
                    set.AddRange(lo, hi);
                }
                else
                {
                    set.AddRange(lo, lo);
                }
            }
            if (_ignoreCase) set.AddSimpleCaseVariants();
            if (negate) set.Complement();
            return set;
        }

        private string EmitSet(CodePointSet set, string cacheKey)
        {
            string key = cacheKey + (_ignoreCase ? "\u0001i" : "") + (_bmpOnly ? "\u0001b" : "");
            string emitted = s_emitted.GetOrAdd(key, _ => set.Emit(_bmpOnly));
            // Case closure (if any) is already applied: stop .NET from folding again.
            return _ignoreCase ? "(?-i:" + emitted + ")" : emitted;
        }

        private string EmitSet(Action<CodePointSet> build, string cacheKey)
        {
            string key = cacheKey + (_ignoreCase ? "\u0001i" : "") + (_bmpOnly ? "\u0001b" : "");
            string emitted = s_emitted.GetOrAdd(key, _ =>
            {
                var s = new CodePointSet();
                build(s);
                if (_ignoreCase) s.AddSimpleCaseVariants();
                return s.Emit(_bmpOnly);
            });
            return _ignoreCase ? "(?-i:" + emitted + ")" : emitted;
        }

        private string CachedSet(string key, Action<CodePointSet> build) => EmitSet(build, key);
    }
}

/// <summary>A translated Oniguruma pattern; <see cref="For"/> picks the variant suited to the input.</summary>
internal sealed class OnigPattern(Regex bmpOnly, Lazy<Regex> full)
{
    public Regex For(string input) => input.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') < 0 ? bmpOnly : full.Value;
}

internal static class CodePoints
{
    /// <summary>Code point at <paramref name="index"/>; a lone surrogate is returned as itself.</summary>
    public static int At(string s, int index, out int units)
    {
        char c = s[index];
        if (char.IsHighSurrogate(c) && index + 1 < s.Length && char.IsLowSurrogate(s[index + 1]))
        {
            units = 2;
            return char.ConvertToUtf32(c, s[index + 1]);
        }
        units = 1;
        return c;
    }

    /// <summary>Replaces lone surrogates by U+FFFD (what UTF-8 encoding does), so every char sequence is valid.</summary>
    public static string Sanitize(string s)
    {
        int i = 0;
        for (; i < s.Length; i++)
        {
            char c = s[i];
            if (!char.IsSurrogate(c)) continue;
            if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { i++; continue; }
            break;
        }
        if (i >= s.Length) return s;
        var chars = s.ToCharArray();
        for (int j = i; j < chars.Length; j++)
        {
            char c = chars[j];
            if (!char.IsSurrogate(c)) continue;
            if (char.IsHighSurrogate(c) && j + 1 < chars.Length && char.IsLowSurrogate(chars[j + 1])) { j++; continue; }
            chars[j] = '\uFFFD';
        }
        return new string(chars);
    }
}
