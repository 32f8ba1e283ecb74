using System.Text.Json.Nodes;

namespace PiServe.Inference.Rope;

/// <summary>
/// LongRoPE's n̂ (our extension, rope_scaling "n_hat"): the first n̂ positions keep the unscaled
/// rotation θ_j, because the initial tokens receive large attention and interpolating them hurts
/// (LongRoPE §3.2). Wraps any family; the family's attention factor still applies everywhere.
/// </summary>
public sealed class UnscaledPrefixRope : RopeScaling
{
    private readonly RopeScaling _inner;
    private readonly float[] _unscaled;
    private readonly Dictionary<RopeFrequencies, RopeFrequencies> _wrapped = new(ReferenceEqualityComparer.Instance);

    public UnscaledPrefixRope(RopeScaling inner, int nHat) : base(inner.RotaryDim, inner.RopeTheta)
    {
        _inner = inner;
        NHat = nHat;
        _unscaled = DefaultInvFreq(inner.RopeTheta, inner.RotaryDim);
    }

    public int NHat { get; }
    public RopeScaling Inner => _inner;
    public override string RopeType => _inner.RopeType;
    public override bool DependsOnSequenceLength => _inner.DependsOnSequenceLength;

    public override RopeFrequencies FrequenciesFor(int sequenceLength)
    {
        var f = _inner.FrequenciesFor(sequenceLength);
        lock (_wrapped)
        {
            if (!_wrapped.TryGetValue(f, out var w))
            {
                w = new RopeFrequencies(f.InvFreq, f.AttentionFactor, f.Regime + $"+n_hat={NHat}", _unscaled, NHat);
                if (_wrapped.Count < 64) _wrapped[f] = w; // dynamic NTK makes a new regime per length: keep the memo small
            }
            return w;
        }
    }

    public override JsonObject Describe()
    {
        var d = _inner.Describe();
        d["n_hat"] = NHat;
        return d;
    }
}
