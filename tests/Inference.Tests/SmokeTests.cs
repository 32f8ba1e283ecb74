namespace PiServe.Inference.Tests;

public class SkeletonTests
{
    [Fact]
    public void UnknownArgumentIsNotAVerb() => Assert.False(PiServe.Api.Verbs.IsVerb("--urls"));
}
