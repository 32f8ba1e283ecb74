using System.Text;

namespace PiServe.Inference.Tokenization;

/// <summary>
/// Unicode normalization (NFC, NFD, NFKC, NFKD) in managed code, following UAX #15: full canonical or
/// compatibility decomposition, canonical ordering by combining class, then (for the composed forms) canonical
/// composition with the "blocked" rule; Hangul syllables are decomposed and composed algorithmically. The tables
/// (<see cref="UnicodeNormalizationData"/>, Unicode <see cref="UnicodeNormalizationData.UnicodeVersion"/>) are
/// generated from the Unicode Character Database by tools/unicode/gen_normalization_data.py.
/// <para>Used instead of <see cref="string.Normalize(NormalizationForm)"/>, which does nothing under
/// InvariantGlobalization (no ICU). Never throws on ill-formed text: lone surrogates and non-characters such as
/// U+FFFE pass through unchanged as starters, as Hugging Face's Rust tokenizers do.</para>
/// </summary>
public static class UnicodeNormalization
{
    public static string UnicodeVersion => UnicodeNormalizationData.UnicodeVersion;

    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private static readonly Dictionary<long, int> s_compose = BuildCompose();

    private static Dictionary<long, int> BuildCompose()
    {
        var t = UnicodeNormalizationData.CompositionPairs;
        var d = new Dictionary<long, int>(t.Length / 3);
        for (int i = 0; i < t.Length; i += 3) d[((long)t[i] << 21) | (uint)t[i + 1]] = t[i + 2];
        return d;
    }

    public static string Normalize(string text, NormalizationForm form)
    {
        bool compat = form is NormalizationForm.FormKC or NormalizationForm.FormKD;
        bool compose = form is NormalizationForm.FormC or NormalizationForm.FormKC;
        // Below these code points every character is its own normalization in that form (and has class 0).
        int stable = compat ? 0xA0 : compose ? 0x300 : 0xC0;
        int first = 0;
        while (first < text.Length && text[first] < stable) first++;
        if (first == text.Length) return text;
        // Keep the stable prefix except its last character, which may compose with what follows.
        int start = Math.Max(0, first - 1);

        var buf = new List<int>(text.Length - start + 8);
        for (int i = start; i < text.Length; i++)
        {
            int cp = text[i];
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                cp = char.ConvertToUtf32(text[i], text[++i]);
            Decompose(cp, compat, buf);
        }
        if (compose) Compose(buf);

        var sb = new StringBuilder(start + buf.Count + 8);
        sb.Append(text, 0, start);
        foreach (int cp in buf)
        {
            if (cp < 0x10000) sb.Append((char)cp); // includes lone surrogates, passed through as they came
            else sb.Append(char.ConvertFromUtf32(cp));
        }
        return sb.ToString();
    }

    /// <summary>Canonical combining class (0 for starters, unassigned code points and surrogates).</summary>
    public static int CombiningClass(int cp)
    {
        if (cp < 0x300) return 0;
        var r = UnicodeNormalizationData.CccRanges;
        int lo = 0, hi = r.Length / 3 - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (cp < r[mid * 3]) hi = mid - 1;
            else if (cp > r[mid * 3 + 1]) lo = mid + 1;
            else return r[mid * 3 + 2];
        }
        return 0;
    }

    /// <summary>Appends the full decomposition of <paramref name="cp"/> to <paramref name="buf"/>, keeping the
    /// buffer's trailing run of non-starters in canonical order.</summary>
    private static void Decompose(int cp, bool compat, List<int> buf)
    {
        if (cp < 0xC0 && !(compat && cp >= 0xA0)) { buf.Add(cp); return; }
        int s = cp - SBase;
        if ((uint)s < SCount)
        {
            buf.Add(LBase + s / NCount);
            buf.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) buf.Add(TBase + s % TCount);
            return;
        }
        if (compat && Lookup(cp, UnicodeNormalizationData.CompatKeys, UnicodeNormalizationData.CompatOffsets,
                             UnicodeNormalizationData.CompatData, buf))
            return;
        if (Lookup(cp, UnicodeNormalizationData.CanonKeys, UnicodeNormalizationData.CanonOffsets,
                   UnicodeNormalizationData.CanonData, buf))
            return;
        AppendOrdered(buf, cp);
    }

    private static bool Lookup(int cp, ReadOnlySpan<int> keys, ReadOnlySpan<int> offsets, ReadOnlySpan<int> data, List<int> buf)
    {
        int i = keys.BinarySearch(cp);
        if (i < 0) return false;
        foreach (int c in data[offsets[i]..offsets[i + 1]]) AppendOrdered(buf, c);
        return true;
    }

    /// <summary>Canonical ordering: a non-starter moves back past non-starters of a higher class (stable).</summary>
    private static void AppendOrdered(List<int> buf, int cp)
    {
        int cc = CombiningClass(cp);
        int i = buf.Count;
        buf.Add(cp);
        if (cc == 0) return;
        while (i > 0)
        {
            int prev = CombiningClass(buf[i - 1]);
            if (prev <= cc) break;
            buf[i] = buf[i - 1];
            i--;
        }
        buf[i] = cp;
    }

    /// <summary>Canonical composition of a decomposed, canonically ordered buffer, in place.</summary>
    private static void Compose(List<int> buf)
    {
        if (buf.Count == 0) return;
        int starterPos = 0;
        int starter = buf[0];
        int lastClass = CombiningClass(starter);
        if (lastClass != 0) lastClass = 256; // no starter yet: nothing can compose until one comes
        int write = 1;
        for (int read = 1; read < buf.Count; read++)
        {
            int ch = buf[read];
            int cc = CombiningClass(ch);
            // ch is not blocked from the starter when everything between them has a lower class, or when it
            // directly follows the starter.
            if ((lastClass < cc || lastClass == 0) && TryCompose(starter, ch, out int composite))
            {
                buf[starterPos] = composite;
                starter = composite;
                continue;
            }
            if (cc == 0)
            {
                starterPos = write;
                starter = ch;
            }
            lastClass = cc;
            buf[write++] = ch;
        }
        buf.RemoveRange(write, buf.Count - write);
    }

    private static bool TryCompose(int a, int b, out int composite)
    {
        int l = a - LBase, v = b - VBase;
        if ((uint)l < LCount && (uint)v < VCount)
        {
            composite = SBase + (l * VCount + v) * TCount;
            return true;
        }
        int s = a - SBase, t = b - TBase;
        if ((uint)s < SCount && s % TCount == 0 && t > 0 && t < TCount)
        {
            composite = a + t;
            return true;
        }
        return s_compose.TryGetValue(((long)a << 21) | (uint)b, out composite);
    }
}
