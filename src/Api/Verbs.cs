namespace PiServe.Api;

public static class Verbs
{
    public static bool IsVerb(string arg) => false;
    public static int Run(string[] args) => 2;
}
