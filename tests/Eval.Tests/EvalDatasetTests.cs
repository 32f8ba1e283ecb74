using PiServe.Eval.Datasets;

namespace PiServe.Eval.Tests;

/// <summary>The three dataset formats, malformed lines with their numbers, missing paths, DataRoot confinement.</summary>
public class EvalDatasetTests
{
    [Fact]
    public void Pg19IsAFolderOfBooksInNameOrder()
    {
        using var tmp = new TempDir();
        var dir = EvalFixtures.WritePg19(Path.Combine(tmp.Path, "pg19"), books: 3, words: 50);
        File.WriteAllText(Path.Combine(dir, "notes.md"), "not a book");
        var c = DatasetReader.Read(DatasetKind.Pg19, dir);
        Assert.Equal(["book00", "book01", "book02"], c.Documents.Select(d => d.Id));
        Assert.Equal(EvalFixtures.Text(101, 50), c.Documents[1].Text);
        Assert.Equal(2, DatasetReader.Read(DatasetKind.Pg19, dir, maxDocuments: 2).Documents.Count);
    }

    [Fact]
    public void ProofPileReadsTheTextField()
    {
        using var tmp = new TempDir();
        var file = EvalFixtures.WriteProofPile(tmp.File("pp.jsonl"), docs: 4, words: 20);
        var c = DatasetReader.Read(DatasetKind.ProofPile, file, maxDocuments: 3);
        Assert.Equal(3, c.Documents.Count);
        Assert.Equal("line 2", c.Documents[1].Id);
        Assert.Equal(EvalFixtures.Text(201, 20), c.Documents[1].Text);
    }

    [Fact]
    public void GovReportReadsBothSchemas()
    {
        using var tmp = new TempDir();
        var file = EvalFixtures.WriteGovReport(tmp.File("gov.jsonl"), docs: 4, words: 40);
        File.AppendAllText(file, "{\"id\": 7, \"report\": [\"Para one.\", \"Para two.\"], \"summary\": \"Short.\"}\n\n");
        var c = DatasetReader.Read(DatasetKind.GovReport, file);
        Assert.Equal(["gao-0", "crs-1", "gao-2", "crs-3", "7"], c.Documents.Select(d => d.Id));
        Assert.Equal(EvalFixtures.Text(301, 40), c.Documents[1].Text);       // SCROLLS "input"
        Assert.Equal(EvalFixtures.Text(401, 30), c.Documents[1].Reference);  // SCROLLS "output"
        Assert.Equal("Para one.\nPara two.", c.Documents[4].Text);
    }

    [Fact]
    public void MalformedLinesAreReportedWithTheirLineNumbers()
    {
        using var tmp = new TempDir();
        string file = tmp.File("bad.jsonl");
        File.WriteAllLines(file,
        [
            "{\"text\": \"fine\"}",          // 1
            "{\"text\": \"broken",           // 2: invalid JSON
            "",                              // 3: blank, skipped
            "[1, 2]",                        // 4: not an object
            "{\"body\": \"x\"}",             // 5: no text
            "{\"text\": 42}",                // 6: not a string
            "{\"text\": \"also fine\"}",     // 7
        ]);
        var e = Assert.Throws<DatasetException>(() => DatasetReader.Read(DatasetKind.ProofPile, file));
        Assert.Equal([2, 4, 5, 6], e.Lines.Select(l => l.Line));
        Assert.Contains("4 malformed lines", e.Message);
        Assert.Contains("line 2: invalid JSON", e.Message);
        Assert.Contains("line 4: not a JSON object", e.Message);
        Assert.Contains("line 5: missing field \"text\"", e.Message);
        Assert.Contains("line 6: field \"text\" must be a string", e.Message);

        var skipped = DatasetReader.Read(DatasetKind.ProofPile, file, skipMalformed: true);
        Assert.Equal(["fine", "also fine"], skipped.Documents.Select(d => d.Text));
        Assert.Equal([2, 4, 5, 6], skipped.SkippedLines.Select(l => l.Line));

        File.WriteAllLines(file, ["{\"report\": \"r\"}", "{\"input\": \"i\", \"output\": \"o\"}", "{\"other\": 1}"]);
        var g = Assert.Throws<DatasetException>(() => DatasetReader.Read(DatasetKind.GovReport, file));
        Assert.Contains("line 1: missing field \"summary\"", g.Message);
        Assert.Contains("line 3: expected \"report\" and \"summary\"", g.Message);
    }

    [Fact]
    public void MissingAndEmptyDatasetsFailWithTheReason()
    {
        using var tmp = new TempDir();
        Assert.Contains("does not exist", Assert.Throws<DatasetException>(() => DatasetReader.Read(DatasetKind.Pg19, tmp.File("nope"))).Message);
        Assert.Contains("does not exist", Assert.Throws<DatasetException>(() => DatasetReader.Read(DatasetKind.ProofPile, tmp.File("nope.jsonl"))).Message);
        Directory.CreateDirectory(tmp.File("empty"));
        Assert.Contains("no .txt files", Assert.Throws<DatasetException>(() => DatasetReader.Read(DatasetKind.Pg19, tmp.File("empty"))).Message);
        File.WriteAllText(tmp.File("blank.jsonl"), "\n\n");
        Assert.Contains("no documents", Assert.Throws<DatasetException>(() => DatasetReader.Read(DatasetKind.ProofPile, tmp.File("blank.jsonl"))).Message);
    }

    [Fact]
    public void CatalogRefusesPathsOutsideTheDataRootAndUnknownKinds()
    {
        using var tmp = new TempDir();
        var catalog = new DatasetCatalog(tmp.Path,
        [
            new("pg", "pg19", "pg19"), new("pp", "proof-pile", "sub/pp.jsonl"), new("up", "pg19", "../elsewhere"),
            new("abs", "govreport", "/etc/passwd"), new("weird", "arxiv", "x"),
        ]);
        Assert.Null(catalog.Find("pg")!.Error);
        Assert.Equal(Path.Combine(tmp.Path, "sub", "pp.jsonl"), catalog.Find("pp")!.FullPath);
        Assert.Contains("outside PiServe:DataRoot", catalog.Find("up")!.Error);
        Assert.Contains("outside PiServe:DataRoot", catalog.Find("abs")!.Error);
        Assert.Contains("is not one of pg19, proof-pile, govreport", catalog.Find("weird")!.Error);
        Assert.Null(catalog.Find("nope"));
    }
}
