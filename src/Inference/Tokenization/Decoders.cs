using System.Text;

namespace PiServe.Inference.Tokenization;

/// <summary>
/// One step of a decoder chain, written as a streaming transducer so that one code path serves both
/// <see cref="ITokenizer.Decode"/> and <see cref="StreamingDecoder"/> (their outputs agree by construction).
/// <para>
/// HF decoders map a list of token strings to a list of strings, then concatenate. Here each token arrives as
/// <see cref="Begin"/> (a new token starts) followed by <see cref="Write"/> calls with its text. A stage whose
/// input is "whole" receives exactly one Write per token with the complete token; stages that merge or split
/// tokens (ByteFallback, ByteLevel, Fuse) emit fragments instead, and a stage that needs whole tokens may not
/// follow them (checked when the tokenizer is loaded). Text is only emitted once no later token can change it.
/// </para>
/// </summary>
internal abstract class DecodeStage
{
    private DecodeStage? _next;
    private StringBuilder? _sink;

    public void Connect(DecodeStage next) => _next = next;
    public void Connect(StringBuilder sink) => _sink = sink;

    public abstract void Begin();
    public abstract void Write(string text);

    /// <summary>End of the stream: flush held text, then end the next stage.</summary>
    public abstract void End();

    protected void EmitBegin() => _next?.Begin();

    protected void Emit(string text)
    {
        if (_next is not null) _next.Write(text);
        else if (text.Length > 0) _sink!.Append(text);
    }

    protected void EmitEnd() => _next?.End();
}

/// <summary>Describes a decoder step; creates fresh stateful stages for each decode.</summary>
internal abstract class DecoderSpec
{
    /// <summary>Whether the stage needs one Write per token with the whole token text.</summary>
    public virtual bool NeedsWholeTokens => false;

    /// <summary>Whether the output is one Write per token given input that is.</summary>
    public virtual bool PreservesWholeTokens => true;

    public abstract DecodeStage Create(bool wholeInput);
}

/// <summary>An incremental UTF-8 decoder that replaces each maximal invalid subsequence by one U+FFFD
/// (the WHATWG / Unicode "best practice", as String::from_utf8_lossy and TextDecoder do).</summary>
internal struct Utf8Lossy
{
    private int _codePoint, _needed, _seen, _lower, _upper;

    public void Feed(byte b, StringBuilder output)
    {
        while (true)
        {
            if (_needed == 0)
            {
                if (b <= 0x7F) output.Append((char)b);
                else if (b is >= 0xC2 and <= 0xDF) { _needed = 1; _codePoint = b & 0x1F; _lower = 0x80; _upper = 0xBF; }
                else if (b is >= 0xE0 and <= 0xEF)
                {
                    _needed = 2;
                    _codePoint = b & 0x0F;
                    _lower = b == 0xE0 ? 0xA0 : 0x80;
                    _upper = b == 0xED ? 0x9F : 0xBF;
                }
                else if (b is >= 0xF0 and <= 0xF4)
                {
                    _needed = 3;
                    _codePoint = b & 0x07;
                    _lower = b == 0xF0 ? 0x90 : 0x80;
                    _upper = b == 0xF4 ? 0x8F : 0xBF;
                }
                else output.Append('\uFFFD');
                return;
            }
            if (b < _lower || b > _upper)
            {
                Reset();
                output.Append('\uFFFD');
                continue; // reprocess this byte as the start of a new sequence
            }
            _lower = 0x80;
            _upper = 0xBF;
            _codePoint = (_codePoint << 6) | (b & 0x3F);
            if (++_seen == _needed)
            {
                if (_codePoint <= 0xFFFF) output.Append((char)_codePoint);
                else output.Append(char.ConvertFromUtf32(_codePoint));
                Reset();
            }
            return;
        }
    }

    public readonly bool Pending => _needed != 0;

    /// <summary>End of input: an incomplete sequence becomes one U+FFFD.</summary>
    public void Finish(StringBuilder output)
    {
        if (_needed != 0) output.Append('\uFFFD');
        Reset();
    }

    private void Reset()
    {
        _codePoint = _needed = _seen = 0;
        _lower = 0x80;
        _upper = 0xBF;
    }
}

// ---- Replace ---------------------------------------------------------------------------------------

internal sealed class ReplaceDecoderSpec(string pattern, string content) : DecoderSpec
{
    public override DecodeStage Create(bool wholeInput) => new Stage(pattern, content, wholeInput || pattern.Length <= 1);

    private sealed class Stage(string pattern, string content, bool direct) : DecodeStage
    {
        private string _held = "";

        public override void Begin()
        {
            FlushHeld();
            EmitBegin();
        }

        public override void Write(string text)
        {
            if (pattern.Length == 0)
            {
                Emit(text);
                return;
            }
            if (direct)
            {
                Emit(text.Replace(pattern, content, StringComparison.Ordinal));
                return;
            }
            // Fragmented input and a multi-char pattern: hold back a tail that could start a match.
            string buffer = _held + text;
            var sb = new StringBuilder();
            int i = 0;
            int safe = buffer.Length - pattern.Length + 1; // a match may start below this index
            while (i < safe)
            {
                int idx = buffer.IndexOf(pattern, i, StringComparison.Ordinal);
                if (idx < 0) break;
                sb.Append(buffer, i, idx - i).Append(content);
                i = idx + pattern.Length;
            }
            int emitTo = Math.Max(i, safe);
            if (emitTo > i) sb.Append(buffer, i, emitTo - i);
            _held = buffer[emitTo..];
            Emit(sb.ToString());
        }

        private void FlushHeld()
        {
            if (_held.Length == 0) return;
            string h = _held;
            _held = "";
            Emit(h);
        }

        public override void End()
        {
            FlushHeld();
            EmitEnd();
        }
    }
}

// ---- ByteFallback ----------------------------------------------------------------------------------

/// <summary>
/// HF "ByteFallback": runs of "&lt;0xAB&gt;" tokens become the UTF-8 text they encode. Invalid or incomplete
/// byte sequences become U+FFFD per maximal invalid subsequence (as tokenizers.js; the Rust crate instead
/// replaces a whole invalid run by one U+FFFD per byte — only reachable with ids an encoder never produces).
/// </summary>
internal sealed class ByteFallbackDecoderSpec : DecoderSpec
{
    public override bool NeedsWholeTokens => true;
    public override bool PreservesWholeTokens => false;
    public override DecodeStage Create(bool wholeInput) => new Stage();

    public static bool TryParseByteToken(string token, out byte value)
    {
        value = 0;
        if (token.Length != 6 || !token.StartsWith("<0x", StringComparison.Ordinal) || token[5] != '>') return false;
        return byte.TryParse(token.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out value);
    }

    private sealed class Stage : DecodeStage
    {
        private Utf8Lossy _utf8;
        private bool _inGroup;
        private readonly StringBuilder _buf = new();

        public override void Begin() { }

        public override void Write(string token)
        {
            if (TryParseByteToken(token, out byte b))
            {
                if (!_inGroup)
                {
                    _inGroup = true;
                    EmitBegin();
                }
                _utf8.Feed(b, _buf);
                EmitBuffer();
                return;
            }
            CloseGroup();
            EmitBegin();
            Emit(token);
        }

        private void CloseGroup()
        {
            if (!_inGroup) return;
            _utf8.Finish(_buf);
            EmitBuffer();
            _inGroup = false;
        }

        private void EmitBuffer()
        {
            if (_buf.Length == 0) return;
            string s = _buf.ToString();
            _buf.Clear();
            Emit(s);
        }

        public override void End()
        {
            CloseGroup();
            EmitEnd();
        }
    }
}

// ---- ByteLevel -------------------------------------------------------------------------------------

/// <summary>HF "ByteLevel" decoder: every token's characters map back to bytes (a token with a character
/// outside the map contributes its own UTF-8 bytes), and the whole byte stream is decoded lossily.</summary>
internal sealed class ByteLevelDecoderSpec : DecoderSpec
{
    public override bool NeedsWholeTokens => true;
    public override bool PreservesWholeTokens => false;
    public override DecodeStage Create(bool wholeInput) => new Stage();

    private sealed class Stage : DecodeStage
    {
        private Utf8Lossy _utf8;
        private bool _begun;
        private readonly StringBuilder _buf = new();

        public override void Begin()
        {
            if (_begun) return;
            _begun = true;
            EmitBegin();
        }

        public override void Write(string token)
        {
            bool allMapped = true;
            foreach (char c in token)
            {
                if (ByteLevelMap.ByteOf(c) < 0)
                {
                    allMapped = false;
                    break;
                }
            }
            if (allMapped)
                foreach (char c in token) _utf8.Feed((byte)ByteLevelMap.ByteOf(c), _buf);
            else
                foreach (byte b in Encoding.UTF8.GetBytes(token)) _utf8.Feed(b, _buf);
            if (_buf.Length > 0)
            {
                Emit(_buf.ToString());
                _buf.Clear();
            }
        }

        public override void End()
        {
            _utf8.Finish(_buf);
            if (_buf.Length > 0) Emit(_buf.ToString());
            _buf.Clear();
            EmitEnd();
        }
    }
}

// ---- Fuse ------------------------------------------------------------------------------------------

internal sealed class FuseDecoderSpec : DecoderSpec
{
    public override bool PreservesWholeTokens => false;
    public override DecodeStage Create(bool wholeInput) => new Stage();

    private sealed class Stage : DecodeStage
    {
        private bool _begun;

        public override void Begin()
        {
            if (_begun) return;
            _begun = true;
            EmitBegin();
        }

        public override void Write(string text) => Emit(text);
        public override void End() => EmitEnd();
    }
}

// ---- Strip -----------------------------------------------------------------------------------------

/// <summary>HF "Strip": per token, removes up to <c>start</c> leading and <c>stop</c> trailing
/// <c>content</c> characters. After Fuse there is a single token, so only the very start of the text is
/// stripped (the Llama-2 decoder's "drop the space of the first ▁word").</summary>
internal sealed class StripDecoderSpec(char content, int start, int stop) : DecoderSpec
{
    public override DecodeStage Create(bool wholeInput) => new Stage(content, start, stop, wholeInput);

    private sealed class Stage(char content, int start, int stop, bool wholeInput) : DecodeStage
    {
        private int _leading;  // leading content chars still allowed to be stripped in this token
        private int _held;     // trailing content chars held back (at most stop)

        public override void Begin()
        {
            _held = 0; // they were trailing characters of the previous token: stripped
            _leading = start;
            EmitBegin();
        }

        public override void Write(string text)
        {
            var sb = new StringBuilder(text.Length);
            foreach (char c in text)
            {
                if (_leading > 0)
                {
                    if (c == content)
                    {
                        _leading--;
                        continue;
                    }
                    _leading = 0;
                }
                if (c == content && stop > 0)
                {
                    if (_held < stop) _held++;
                    else sb.Append(content);
                    continue;
                }
                if (_held > 0)
                {
                    sb.Append(content, _held);
                    _held = 0;
                }
                sb.Append(c);
            }
            if (wholeInput)
            {
                _held = 0;
                _leading = 0;
            }
            Emit(sb.ToString());
        }

        public override void End()
        {
            _held = 0;
            EmitEnd();
        }
    }
}

// ---- Metaspace ----------------------------------------------------------------------------------------

/// <summary>HF "Metaspace" decoder: replacement → ' ', except in the first token, where (unless the prepend
/// scheme is "never") replacement characters are removed.</summary>
internal sealed class MetaspaceDecoderSpec(char replacement, bool stripFirst) : DecoderSpec
{
    public override DecodeStage Create(bool wholeInput) => new Stage(replacement, stripFirst);

    private sealed class Stage(char replacement, bool stripFirst) : DecodeStage
    {
        private int _tokenIndex = -1;

        public override void Begin()
        {
            _tokenIndex++;
            EmitBegin();
        }

        public override void Write(string text)
        {
            if (_tokenIndex == 0 && stripFirst)
                Emit(text.Replace(replacement.ToString(), "", StringComparison.Ordinal));
            else
                Emit(text.Replace(replacement, ' '));
        }

        public override void End() => EmitEnd();
    }
}

// ---- no decoder -------------------------------------------------------------------------------------

/// <summary>No decoder in tokenizer.json: HF joins the tokens with single spaces.</summary>
internal sealed class JoinDecoderSpec : DecoderSpec
{
    public override bool PreservesWholeTokens => false;
    public override DecodeStage Create(bool wholeInput) => new Stage();

    private sealed class Stage : DecodeStage
    {
        private bool _first = true;

        public override void Begin()
        {
            if (_first)
            {
                _first = false;
                EmitBegin();
            }
            else Emit(" ");
        }

        public override void Write(string text) => Emit(text);
        public override void End() => EmitEnd();
    }
}

// ---- clean_up_tokenization_spaces ---------------------------------------------------------------------

/// <summary>
/// transformers' <c>clean_up_tokenization</c> (tokenizer_config.json clean_up_tokenization_spaces): removes the
/// space in " .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're" — sequential whole-string
/// replacements. Streaming: text is held back while it ends with a proper prefix of a pattern; a cut there
/// is safe because every pattern starts with a space and the replacements only ever delete spaces.
/// </summary>
internal sealed class CleanupStage : DecodeStage
{
    private static readonly (string From, string To)[] Rules =
    [
        (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
        (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
    ];

    private static readonly string[] HoldSuffixes = [" ", " '", " n", " n'", " 'v", " 'r"];

    private string _pending = "";

    public static string Apply(string text)
    {
        foreach (var (from, to) in Rules)
            text = text.Replace(from, to, StringComparison.Ordinal);
        return text;
    }

    public override void Begin() { }

    public override void Write(string text)
    {
        if (text.Length == 0) return;
        _pending += text;
        int cut = _pending.Length;
        bool changed = true;
        while (changed && cut > 0)
        {
            changed = false;
            foreach (var s in HoldSuffixes)
            {
                if (cut >= s.Length && string.CompareOrdinal(_pending, cut - s.Length, s, 0, s.Length) == 0)
                {
                    cut -= s.Length;
                    changed = true;
                    break;
                }
            }
        }
        if (cut == 0) return;
        string ready = _pending[..cut];
        _pending = _pending[cut..];
        Emit(Apply(ready));
    }

    public override void End()
    {
        if (_pending.Length > 0) Emit(Apply(_pending));
        _pending = "";
        EmitEnd();
    }
}

/// <summary>A full decoder chain plus its output buffer.</summary>
internal sealed class DecodePipeline
{
    private readonly DecodeStage _head;
    private readonly StringBuilder _output = new();

    public DecodePipeline(IReadOnlyList<DecoderSpec> specs, bool cleanup)
    {
        if (specs.Count == 0) specs = [new JoinDecoderSpec()];
        var stages = new List<DecodeStage>();
        bool whole = true;
        foreach (var spec in specs)
        {
            stages.Add(spec.Create(whole));
            whole = whole && spec.PreservesWholeTokens;
        }
        if (cleanup) stages.Add(new CleanupStage());
        for (int i = 0; i + 1 < stages.Count; i++) stages[i].Connect(stages[i + 1]);
        stages[^1].Connect(_output);
        _head = stages[0];
    }

    public void Push(string token)
    {
        _head.Begin();
        _head.Write(token);
    }

    public void End() => _head.End();

    public string Take()
    {
        if (_output.Length == 0) return "";
        string s = _output.ToString();
        _output.Clear();
        return s;
    }
}
