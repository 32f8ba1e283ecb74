namespace PiServe.Eval.Metrics;

/// <summary>
/// The Porter stemmer (M. F. Porter, "An algorithm for suffix stripping", 1980) as NLTK's
/// <c>PorterStemmer()</c> runs it by default, in its NLTK_EXTENSIONS mode. That default is what Google's
/// rouge-score builds for <c>use_stemmer=True</c>, so published ROUGE numbers (and HF <c>evaluate</c>'s)
/// are computed with it rather than with the 1980 rules. On top of the paper it has a table of irregular
/// forms, leaves words of one or two letters alone, and changes steps 1a, 1b, 1c, 2 and the *o
/// condition (each marked below). Checked word by word against NLTK 3.8 on the KJV Bible and the Debian
/// licence texts (tests/fixtures/rouge/porter_nltk_extensions.tsv, tools/reference/rouge_fixtures.py).
/// Each step tries its rules longest suffix first; the first rule whose suffix matches decides, and if
/// its condition fails the step leaves the word unchanged.
/// </summary>
public static class PorterStemmer
{
    /// <summary>
    /// Words the rules get wrong, with their stems: NLTK's table of errors reported to Martin Porter
    /// over the years. Without it "dying" would stem to "dy" and "news" to "new".
    /// </summary>
    private static readonly Dictionary<string, string> IrregularForms = new(StringComparer.Ordinal)
    {
        ["sky"] = "sky", ["skies"] = "sky",
        ["dying"] = "die", ["lying"] = "lie", ["tying"] = "tie",
        ["news"] = "news",
        ["inning"] = "inning", ["innings"] = "inning",
        ["outing"] = "outing", ["outings"] = "outing",
        ["canning"] = "canning", ["cannings"] = "canning",
        ["howe"] = "howe",
        ["proceed"] = "proceed", ["exceed"] = "exceed", ["succeed"] = "succeed",
    };

    /// <summary>
    /// The stem of <paramref name="word"/>, lowercased first as NLTK's <c>stem()</c> does by default.
    /// ROUGE only passes tokens of a–z and 0–9 (digits count as consonants here, as in NLTK).
    /// </summary>
    public static string Stem(string word)
    {
        // NLTK looks the table up with the word as given, before lowercasing: "SKY" is not in it and
        // goes through the rules (to "ski"). ROUGE lowercases before stemming, so this never shows there.
        if (IrregularForms.TryGetValue(word, out string? irregular)) return irregular;
        string w = word.ToLowerInvariant();
        if (w.Length <= 2) return w; // NLTK: too short to stem (not in the paper)
        w = Step1a(w);
        w = Step1b(w);
        w = Step1c(w);
        w = Step2(w);
        w = Step3(w);
        w = Step4(w);
        w = Step5a(w);
        w = Step5b(w);
        return w;
    }

    /// <summary>A consonant is a letter other than a, e, i, o, u, and other than y preceded by a consonant.</summary>
    internal static bool IsConsonant(string w, int i) => w[i] switch
    {
        'a' or 'e' or 'i' or 'o' or 'u' => false,
        'y' => i == 0 || !IsConsonant(w, i - 1),
        _ => true,
    };

    /// <summary>m in [C](VC)^m[V]: the number of vowel→consonant transitions.</summary>
    internal static int Measure(string stem)
    {
        int m = 0;
        for (int i = 1; i < stem.Length; i++)
            if (IsConsonant(stem, i) && !IsConsonant(stem, i - 1)) m++;
        return m;
    }

    private static bool ContainsVowel(string stem)
    {
        for (int i = 0; i < stem.Length; i++)
            if (!IsConsonant(stem, i)) return true;
        return false;
    }

    /// <summary>*d: ends with a double consonant.</summary>
    private static bool EndsDoubleConsonant(string w) =>
        w.Length >= 2 && w[^1] == w[^2] && IsConsonant(w, w.Length - 1);

    /// <summary>
    /// *o: ends consonant-vowel-consonant, the last not w, x or y. NLTK also counts a two-letter
    /// vowel-consonant stem (with no w/x/y exception), so "ate" and "awe" keep their e in step 5a.
    /// </summary>
    private static bool EndsCvc(string w) =>
        (w.Length >= 3 && IsConsonant(w, w.Length - 3) && !IsConsonant(w, w.Length - 2) && IsConsonant(w, w.Length - 1)
            && w[^1] is not ('w' or 'x' or 'y'))
        || (w.Length == 2 && !IsConsonant(w, 0) && IsConsonant(w, 1));

    private readonly record struct Rule(string Suffix, string Replacement, Func<string, bool>? Condition);

    /// <summary>The first rule whose suffix matches decides: replaced when its condition holds on the stem, else the word is kept.</summary>
    private static string Apply(string w, ReadOnlySpan<Rule> rules)
    {
        foreach (var r in rules)
        {
            if (!w.EndsWith(r.Suffix, StringComparison.Ordinal)) continue;
            string stem = w[..^r.Suffix.Length];
            return r.Condition is null || r.Condition(stem) ? stem + r.Replacement : w;
        }
        return w;
    }

    private static bool M0(string stem) => Measure(stem) > 0;
    private static bool M1(string stem) => Measure(stem) > 1;

    private static string Step1a(string w)
    {
        // NLTK: a four-letter -ies word keeps "ie" (dies -> die, ties -> tie; flies still -> fli).
        if (w.Length == 4 && w.EndsWith("ies", StringComparison.Ordinal)) return w[..^1];
        return Apply(w,
        [
            new("sses", "ss", null), new("ies", "i", null), new("ss", "ss", null), new("s", "", null),
        ]);
    }

    private static string Step1b(string w)
    {
        // NLTK: -ied always comes off, to "ie" in a four-letter word (died -> die) and to "i" otherwise
        // (spied -> spi, to meet spy -> spi from step 1c), before the paper's rules are tried.
        if (w.EndsWith("ied", StringComparison.Ordinal)) return w[..^3] + (w.Length == 4 ? "ie" : "i");
        if (w.EndsWith("eed", StringComparison.Ordinal))
            return M0(w[..^3]) ? w[..^1] : w; // (m>0) EED -> EE
        string? stem = null;
        if (w.EndsWith("ed", StringComparison.Ordinal) && ContainsVowel(w[..^2])) stem = w[..^2];      // (*v*) ED ->
        else if (w.EndsWith("ing", StringComparison.Ordinal) && ContainsVowel(w[..^3])) stem = w[..^3]; // (*v*) ING ->
        if (stem is null) return w;
        // Tidying up after ED / ING.
        if (stem.EndsWith("at", StringComparison.Ordinal) || stem.EndsWith("bl", StringComparison.Ordinal) || stem.EndsWith("iz", StringComparison.Ordinal))
            return stem + "e";
        if (EndsDoubleConsonant(stem))
            return stem[^1] is 'l' or 's' or 'z' ? stem : stem[..^1]; // (*d and not (*L or *S or *Z)) -> single letter
        if (Measure(stem) == 1 && EndsCvc(stem)) return stem + "e"; // (m=1 and *o) -> E
        return stem;
    }

    /// <summary>
    /// NLTK: Y -> I when the y follows a consonant that is not the word's first letter (happy -> happi,
    /// spy -> spi, but enjoy stays enjoy where the paper's (*v*) Y -> I gives enjoi).
    /// </summary>
    private static string Step1c(string w)
    {
        if (!w.EndsWith('y')) return w;
        string stem = w[..^1];
        return stem.Length > 1 && IsConsonant(stem, stem.Length - 1) ? stem + "i" : w;
    }

    private static string Step2(string w)
    {
        // NLTK: ALLI -> AL is tried first and the result goes through step 2 again, so that e.g.
        // "-ationalli" loses both suffixes.
        if (w.EndsWith("alli", StringComparison.Ordinal) && M0(w[..^4])) return Step2(w[..^4] + "al");
        return Apply(w,
        [
            new("ational", "ate", M0), new("tional", "tion", M0), new("enci", "ence", M0), new("anci", "ance", M0),
            new("izer", "ize", M0),
            new("bli", "ble", M0), // NLTK (and Porter's later versions): BLI -> BLE where the paper has ABLI -> ABLE
            new("alli", "al", M0), new("entli", "ent", M0),
            new("eli", "e", M0), new("ousli", "ous", M0), new("ization", "ize", M0), new("ation", "ate", M0),
            new("ator", "ate", M0), new("alism", "al", M0), new("iveness", "ive", M0), new("fulness", "ful", M0),
            new("ousness", "ous", M0), new("aliti", "al", M0), new("iviti", "ive", M0), new("biliti", "ble", M0),
            new("fulli", "ful", M0), // NLTK: hopefulli -> hopeful
            // NLTK: LOGI -> LOG with the measure taken on the stem including its "l", so that short
            // stems such as "geo" (geologi) qualify like "archaeo" does.
            new("logi", "log", stem => M0(stem + "l")),
        ]);
    }

    private static string Step3(string w) => Apply(w,
    [
        new("icate", "ic", M0), new("ative", "", M0), new("alize", "al", M0), new("iciti", "ic", M0),
        new("ical", "ic", M0), new("ful", "", M0), new("ness", "", M0),
    ]);

    private static string Step4(string w) => Apply(w,
    [
        new("al", "", M1), new("ance", "", M1), new("ence", "", M1), new("er", "", M1), new("ic", "", M1),
        new("able", "", M1), new("ible", "", M1), new("ant", "", M1), new("ement", "", M1), new("ment", "", M1),
        new("ent", "", M1), new("ion", "", s => M1(s) && s.Length > 0 && s[^1] is 's' or 't'), new("ou", "", M1),
        new("ism", "", M1), new("ate", "", M1), new("iti", "", M1), new("ous", "", M1), new("ive", "", M1),
        new("ize", "", M1),
    ]);

    /// <summary>(m>1) E -> ; (m=1 and not *o) E -> .</summary>
    private static string Step5a(string w)
    {
        if (!w.EndsWith('e')) return w;
        string stem = w[..^1];
        int m = Measure(stem);
        return m > 1 || (m == 1 && !EndsCvc(stem)) ? stem : w;
    }

    /// <summary>(m > 1 and *d and *L) -> single letter.</summary>
    private static string Step5b(string w) =>
        w.EndsWith("ll", StringComparison.Ordinal) && Measure(w[..^1]) > 1 ? w[..^1] : w;
}
