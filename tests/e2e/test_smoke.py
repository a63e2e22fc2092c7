def test_smoke(agent, workspace):
    s = agent.session(str(workspace), permissive=True)
    r = s.send("hi\n/tool write {\"file_path\": \"a.txt\", \"content\": \"x\"}")
    assert "wrote" in r.text
    assert (workspace / "a.txt").read_text() == "x"
