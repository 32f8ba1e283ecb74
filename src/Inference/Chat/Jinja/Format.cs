using System.Globalization;
using System.Text;

namespace PiServe.Inference.Chat.Jinja;

/// <summary>Python's two string formatters: printf-style ("%s" % x, the format filter) and str.format().</summary>
internal static class Format
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    // ---------------------------------------------------------------- "%s" % args

    public static string Percent(string fmt, object? args)
    {
        var positional = args switch
        {
            PyTuple t => t.Items,
            _ => [args],
        };
        var mapping = args as PyDict;
        int next = 0;
        var sb = new StringBuilder();
        int i = 0;
        while (i < fmt.Length)
        {
            char c = fmt[i++];
            if (c != '%') { sb.Append(c); continue; }
            if (i >= fmt.Length) throw new JinjaRuntimeException("incomplete format");
            if (fmt[i] == '%') { sb.Append('%'); i++; continue; }

            object? value;
            bool fromMapping = false;
            string? key = null;
            if (fmt[i] == '(')
            {
                int close = fmt.IndexOf(')', i);
                if (close < 0) throw new JinjaRuntimeException("incomplete format key");
                key = fmt[(i + 1)..close];
                i = close + 1;
                fromMapping = true;
            }
            var flags = new StringBuilder();
            while (i < fmt.Length && "-+ #0".Contains(fmt[i])) flags.Append(fmt[i++]);
            int width = ReadNumber(fmt, ref i) ?? 0;
            int? precision = null;
            if (i < fmt.Length && fmt[i] == '.') { i++; precision = ReadNumber(fmt, ref i) ?? 0; }
            if (i >= fmt.Length) throw new JinjaRuntimeException("incomplete format");
            char type = fmt[i++];

            if (fromMapping)
            {
                if (mapping is null) throw new JinjaRuntimeException("format requires a mapping");
                if (!mapping.TryGetValue(key, out value)) throw new JinjaRuntimeException($"KeyError: {Py.Repr(key)}");
            }
            else
            {
                if (next >= positional.Length) throw new JinjaRuntimeException("not enough arguments for format string");
                value = positional[next++];
            }

            string body = type switch
            {
                's' => Py.Str(value),
                'r' or 'a' => Py.Repr(value),
                'd' or 'i' or 'u' => FormatInteger(value, 'd', precision),
                'x' or 'X' or 'o' => FormatInteger(value, type, precision),
                'f' or 'F' or 'e' or 'E' or 'g' or 'G' => FormatFloat(Py.ToDouble(value), type, precision ?? 6),
                'c' => value is string ch ? ch : Character(Py.ToLong(value)),
                _ => throw new JinjaRuntimeException($"unsupported format character '{type}'"),
            };
            if (type is 's' or 'r' or 'a' && precision is int p && p < body.Length) body = body[..p];
            string f = flags.ToString();
            if (type is not ('s' or 'r' or 'a' or 'c'))
            {
                if (f.Contains('+') && !body.StartsWith('-')) body = "+" + body;
                else if (f.Contains(' ') && !body.StartsWith('-')) body = " " + body;
            }
            if (body.Length < width)
            {
                if (f.Contains('-')) body = body.PadRight(width);
                else if (f.Contains('0') && type is not ('s' or 'r' or 'a' or 'c'))
                {
                    int signLen = body.Length > 0 && body[0] is '-' or '+' or ' ' ? 1 : 0;
                    body = body[..signLen] + new string('0', width - body.Length) + body[signLen..];
                }
                else body = body.PadLeft(width);
            }
            RenderBudget.Append(sb, body);
        }
        if (mapping is null && next < positional.Length && args is PyTuple)
            throw new JinjaRuntimeException("not all arguments converted during string formatting");
        return sb.ToString();
    }

    /// <summary>
    /// A width or precision. Python accepts any size; here one past the render's string limit is refused
    /// before anything that long is padded or formatted.
    /// </summary>
    private static int? ReadNumber(string s, ref int i)
    {
        int start = i;
        long n = 0;
        while (i < s.Length && char.IsAsciiDigit(s[i]))
        {
            n = Math.Min(n * 10 + (s[i] - '0'), int.MaxValue);
            i++;
        }
        if (i == start) return null;
        RenderBudget.CheckStringLength(n);
        return (int)n;
    }

    private static string Character(long codePoint) =>
        codePoint is >= 0 and < 0x110000 and not (>= 0xD800 and <= 0xDFFF)
            ? char.ConvertFromUtf32((int)codePoint)
            : throw new JinjaRuntimeException("%c arg not in range(0x110000) (or a lone surrogate)");

    private static string FormatInteger(object? v, char type, int? precision)
    {
        long n = v is double d ? (long)Math.Truncate(d) : Py.ToLong(v);
        string digits = type switch
        {
            'x' => Math.Abs(n).ToString("x", Inv),
            'X' => Math.Abs(n).ToString("X", Inv),
            'o' => Convert.ToString(Math.Abs(n), 8),
            'b' => Convert.ToString(Math.Abs(n), 2),
            _ => Math.Abs(n).ToString(Inv),
        };
        if (precision is int p && digits.Length < p) digits = digits.PadLeft(p, '0');
        return n < 0 ? "-" + digits : digits;
    }

    private static string FormatFloat(double d, char type, int precision)
    {
        if (double.IsNaN(d)) return char.IsUpper(type) ? "NAN" : "nan";
        if (double.IsInfinity(d)) return (d < 0 ? "-" : "") + (char.IsUpper(type) ? "INF" : "inf");
        switch (char.ToLowerInvariant(type))
        {
            case 'f':
                return d.ToString("F" + precision, Inv);
            case 'e':
                {
                    string s = d.ToString((type == 'E' ? "E" : "e") + precision, Inv); // 1.5e+003
                    int e = s.IndexOfAny(['e', 'E']);
                    int exp = int.Parse(s[(e + 1)..], NumberStyles.AllowLeadingSign, Inv);
                    return s[..(e + 1)] + (exp < 0 ? "-" : "+") + Math.Abs(exp).ToString("00", Inv);
                }
            default: // g
                {
                    int p = precision == 0 ? 1 : precision;
                    if (d == 0) return "0";
                    int exp = (int)Math.Floor(Math.Log10(Math.Abs(d)));
                    // Rounding can carry into the next power of ten.
                    string probe = d.ToString("E" + (p - 1), Inv);
                    exp = int.Parse(probe[(probe.IndexOf('E') + 1)..], NumberStyles.AllowLeadingSign, Inv);
                    string r;
                    if (exp < -4 || exp >= p)
                    {
                        r = FormatFloat(d, type == 'G' ? 'E' : 'e', p - 1);
                        int e = r.IndexOfAny(['e', 'E']);
                        string mant = r[..e];
                        if (mant.Contains('.')) mant = mant.TrimEnd('0').TrimEnd('.');
                        return mant + r[e..];
                    }
                    r = d.ToString("F" + Math.Max(0, p - 1 - exp), Inv);
                    if (r.Contains('.')) r = r.TrimEnd('0').TrimEnd('.');
                    return r;
                }
        }
    }

    // ---------------------------------------------------------------- "{}".format(...)

    public static string StrFormat(string fmt, CallArgs args)
    {
        var sb = new StringBuilder();
        int auto = 0;
        int i = 0;
        while (i < fmt.Length)
        {
            char c = fmt[i];
            if (c == '}')
            {
                if (i + 1 < fmt.Length && fmt[i + 1] == '}') { sb.Append('}'); i += 2; continue; }
                throw new JinjaRuntimeException("Single '}' encountered in format string");
            }
            if (c != '{') { sb.Append(c); i++; continue; }
            if (i + 1 < fmt.Length && fmt[i + 1] == '{') { sb.Append('{'); i += 2; continue; }
            int close = fmt.IndexOf('}', i);
            if (close < 0) throw new JinjaRuntimeException("Single '{' encountered in format string");
            string field = fmt[(i + 1)..close];
            i = close + 1;

            string? spec = null;
            char? conversion = null;
            int colon = field.IndexOf(':');
            if (colon >= 0) { spec = field[(colon + 1)..]; field = field[..colon]; }
            int bang = field.IndexOf('!');
            if (bang >= 0) { conversion = field.Length > bang + 1 ? field[bang + 1] : null; field = field[..bang]; }

            int nameEnd = field.IndexOfAny(['.', '[']);
            string head = nameEnd < 0 ? field : field[..nameEnd];
            object? value;
            if (head.Length == 0)
                value = auto < args.Positional.Count ? args.Positional[auto++] : throw new JinjaRuntimeException("Replacement index out of range");
            else if (int.TryParse(head, NumberStyles.None, Inv, out int index))
                value = index < args.Positional.Count ? args.Positional[index] : throw new JinjaRuntimeException("Replacement index out of range");
            else
            {
                var named = args.Named.FirstOrDefault(kv => kv.Key == head);
                if (named.Key is null) throw new JinjaRuntimeException($"KeyError: '{head}'");
                value = named.Value;
            }
            // .attr and [key] after the field name
            int j = nameEnd < 0 ? field.Length : nameEnd;
            while (j < field.Length)
            {
                if (field[j] == '.')
                {
                    int end = field.IndexOfAny(['.', '['], j + 1);
                    if (end < 0) end = field.Length;
                    value = Py.GetAttr(value, field[(j + 1)..end]);
                    j = end;
                }
                else
                {
                    int end = field.IndexOf(']', j);
                    if (end < 0) throw new JinjaRuntimeException("Missing ']' in format string");
                    string key = field[(j + 1)..end];
                    value = Py.GetItem(value, long.TryParse(key, NumberStyles.None, Inv, out long k) ? k : key);
                    j = end + 1;
                }
            }
            if (conversion == 'r') value = Py.Repr(value);
            else if (conversion == 's') value = Py.Str(value);
            RenderBudget.Append(sb, ApplySpec(value, spec ?? ""));
        }
        return sb.ToString();
    }

    /// <summary>A float with a precision and no type ('{:.3}'): like 'g', but fixed notation keeps a digit after the point.</summary>
    private static string NoTypeWithPrecision(double d, int precision)
    {
        int p = precision == 0 ? 1 : precision;
        if (!double.IsFinite(d)) return FormatFloat(d, 'g', p);
        string probe = d.ToString("E" + (p - 1), Inv);
        int exp = int.Parse(probe[(probe.IndexOf('E') + 1)..], NumberStyles.AllowLeadingSign, Inv);
        if (exp < -4 || exp >= p - 1)
        {
            string sci = FormatFloat(d, 'e', p - 1);
            int e = sci.IndexOf('e');
            string mant = sci[..e];
            if (mant.Contains('.')) mant = mant.TrimEnd('0').TrimEnd('.');
            return mant + sci[e..];
        }
        string r = FormatFloat(d, 'g', p);
        return r.Contains('.') ? r : r + ".0";
    }

    /// <summary>format(value, spec): [[fill]align][sign][#][0][width][,][.precision][type].</summary>
    public static string ApplySpec(object? value, string spec)
    {
        if (spec.Length == 0) return Py.Str(value);
        int i = 0;
        char fill = ' ';
        char? align = null;
        if (spec.Length >= 2 && spec[1] is '<' or '>' or '^' or '=') { fill = spec[0]; align = spec[1]; i = 2; }
        else if (spec[0] is '<' or '>' or '^' or '=') { align = spec[0]; i = 1; }
        char sign = '-';
        if (i < spec.Length && spec[i] is '+' or '-' or ' ') sign = spec[i++];
        if (i < spec.Length && spec[i] == '#') i++;
        if (i < spec.Length && spec[i] == '0') { if (align is null) { fill = '0'; align = '='; } i++; }
        int width = ReadNumber(spec, ref i) ?? 0;
        bool grouping = false;
        if (i < spec.Length && spec[i] is ',' or '_') { grouping = true; i++; }
        int? precision = null;
        if (i < spec.Length && spec[i] == '.') { i++; precision = ReadNumber(spec, ref i); }
        char? type = i < spec.Length ? spec[i] : null;

        string body;
        bool numeric = Py.IsNumber(value) && type != 's';
        if (!numeric)
        {
            if (type is not (null or 's')) throw new JinjaRuntimeException($"Unknown format code '{type}' for object of type '{Py.TypeName(value)}'");
            body = Py.Str(value);
            if (precision is int p && p < body.Length) body = body[..p];
        }
        else
        {
            char t = type ?? (value is double ? 'r' : 'd');
            if (value is bool && type is null) { body = Py.Str(value); numeric = false; }
            else body = t switch
            {
                'd' or 'n' => FormatInteger(value, 'd', null),
                'x' or 'X' or 'o' or 'b' => FormatInteger(value, t, null),
                'f' or 'F' or 'e' or 'E' or 'g' or 'G' => FormatFloat(Py.ToDouble(value), t, precision ?? 6),
                '%' => FormatFloat(Py.ToDouble(value) * 100, 'f', precision ?? 6) + "%",
                'r' => precision is int pr ? NoTypeWithPrecision(Py.ToDouble(value), pr) : Py.FormatFloat(Py.ToDouble(value)),
                _ => throw new JinjaRuntimeException($"Unknown format code '{t}' for object of type '{Py.TypeName(value)}'"),
            };
            if (grouping)
            {
                bool neg = body.StartsWith('-');
                string digits = neg ? body[1..] : body;
                int dot = digits.IndexOfAny(['.', 'e', 'E', '%']);
                string intPart = dot < 0 ? digits : digits[..dot];
                var g = new StringBuilder();
                for (int k = 0; k < intPart.Length; k++)
                {
                    if (k > 0 && (intPart.Length - k) % 3 == 0) g.Append(',');
                    g.Append(intPart[k]);
                }
                body = (neg ? "-" : "") + g + (dot < 0 ? "" : digits[dot..]);
            }
            if (numeric && !body.StartsWith('-') && sign is '+' or ' ') body = sign + body;
        }
        if (body.Length >= width) return body;
        int pad = width - body.Length;
        switch (align ?? (numeric ? '>' : '<'))
        {
            case '<': return body + new string(fill, pad);
            case '^': return new string(fill, pad / 2) + body + new string(fill, pad - pad / 2);
            case '=':
                int signLen = body.Length > 0 && body[0] is '-' or '+' or ' ' ? 1 : 0;
                return body[..signLen] + new string(fill, pad) + body[signLen..];
            default: return new string(fill, pad) + body;
        }
    }
}
