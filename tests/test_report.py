from ssinfnet.report import results_markdown


def test_results_page_carries_provenance_and_numbers():
    manifest = {"profile": "cpu", "data_root": "/data (parameter)", "data_fingerprint": "abc (3 files)",
                "device": "cpu (2 cores)", "git_commit": "deadbeef",
                "stages": {"notebook:01_data": {"wall_time_s": 12.5},
                           "03_single": {"validation": {"ssinfnet": 0.71234}},
                           "05_evaluation": {"infnet_multi": {"GGO meanDic": {"m": 0.5},
                                                              "consolidation meanDic": {"m": 0.25}}}}}
    page = results_markdown(manifest)
    assert "| profile | `cpu` |" in page and "| git commit | `deadbeef` |" in page
    assert "| 01_data | 12.5 |" in page
    assert "| ssinfnet | 0.712 |" in page
    assert "| m | 0.500 | 0.250 |" in page
    assert "optimistic for unseen patients" in page


def test_results_page_without_stages_has_only_provenance():
    page = results_markdown({"profile": "smoke"})
    assert "## Stage" not in page and "| profile | `smoke` |" in page
