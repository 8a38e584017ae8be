from ssinfnet.book.results_page import results_markdown


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


def test_provenance_table_per_chapter_with_reused_models():
    a, b = "a" * 40, "b" * 40
    manifest = {"profile": "cpu", "git_commit": b, "stages": {
        "notebook:02_pretraining": {"wall_time_s": 1.0},
        "02_pretraining": {"provenance": {"git_commit": a, "dirty": False, "data_fingerprint": "d1 (5 files)",
                                          "code_fingerprint": "c1", "time": "t"},
                           "trained": ["pretrain/single"], "reused": {}},
        "03_single": {"provenance": {"git_commit": b, "dirty": True, "data_fingerprint": "d1 (5 files)",
                                     "code_fingerprint": "c2", "time": "t"},
                      "trained": [],
                      "reused": {"finetune/sinfnet": {"trained_at_commit": a, "dirty": False},
                                 "finetune/unet": {"trained_at_commit": a, "dirty": False},
                                 "cv/ssinfnet/fold0": {"trained_at_commit": b, "dirty": True,
                                                       "stale": [{"differs": ["data d0 -> d1"]}]}}},
    }}
    page = results_markdown(manifest)
    assert "| chapter | commit | dirty | data fingerprint | code fingerprint | reused trained models |" in page
    assert "| 02_pretraining | `aaaaaaa` | no | `d1 (5 files)` | `c1` | none |" in page
    assert ("| 03_single | `bbbbbbb` | yes | `d1 (5 files)` | `c2` | `cv/ssinfnet/fold0` (**stale: reused despite "
            "data d0 -> d1**) (trained at bbbbbbb, dirty); `finetune/sinfnet`, `finetune/unet` (trained at aaaaaaa) |"
            ) in page
    assert "| notebook:02_pretraining |" not in page  # wall-time rows are not chapters
    assert "executed at 2 different commits" in page and "not recorded" not in page


def test_provenance_table_reads_old_manifests_as_not_recorded():
    manifest = {"profile": "cpu", "git_commit": "c" * 40,
                "stages": {"02_pretraining": {"config": {}}, "03_single": {"validation": {"x": 0.5}}}}
    page = results_markdown(manifest)
    row = "| not recorded | not recorded | not recorded | not recorded | not recorded |"
    assert f"| 02_pretraining {row}" in page and f"| 03_single {row}" in page
    assert "2 chapter(s) were executed before chapters recorded their own provenance" in page
    assert "| x | 0.500 |" in page  # the numbers are still shown


def test_a_setting_the_run_did_not_record_is_not_reported_with_todays_value():
    """A run records every field of its profile; one made before the flip existed has no ``test_time_flip``,
    and its page must not say it flipped (today's cpu default)."""
    from ssinfnet.book.profiles import get_profile
    from ssinfnet.book.results_page import profile_lines

    params = get_profile("cpu").to_dict()
    recorded = {"profile": "cpu", "data_root": "/data", "parameters": params}
    old = {**recorded, "parameters": {k: v for k, v in params.items() if k not in ("test_time_flip", "n_boot")}}
    row = "| inference: left-right flip averaging (ours) |"
    assert f"{row} True (paper: False) |" in profile_lines(recorded)
    lines = profile_lines(old)
    assert f"{row} not recorded: the run predates this setting (the profile today: True; paper: False) |" in lines
    assert "| bootstrap resamples | not recorded: the run predates this setting (the profile today: 1000; " \
           "paper profile: 5000) |" in lines
    # the other rows still read from what the run recorded
    assert "| input size (px) | 160 (paper: 352) |" in lines
    # a run that recorded no parameters at all is read as the named profile, with no row marked
    assert not any("not recorded" in line for line in profile_lines({"profile": "cpu", "data_root": "/data"}))


def test_a_run_whose_chapters_ran_at_several_commits_names_them_all():
    from ssinfnet.book.results_page import chapter_commits, profile_lines

    def prov(sha):
        return {"provenance": {"git_commit": sha}}

    m = {"profile": "cpu", "data_root": "/data", "git_commit": "b" * 40,
         "stages": {"01_data": prov("a" * 40), "05_evaluation": prov("b" * 40), "03_single": prov("a" * 40),
                    "notebook:01_data": {"wall_time_s": 1.0}}}
    assert chapter_commits(m) == ["a" * 40, "b" * 40]
    assert "; commits `aaaaaaa`, `bbbbbbb` (chapter by chapter under Provenance)." in profile_lines(m)[0]
    page = results_markdown(m)
    assert f"| git commit | `{'b' * 40}` (the last chapter executed; the chapters ran at several commits, below) |" \
        in page
    one = {**m, "stages": {"01_data": prov("b" * 40)}}
    assert chapter_commits(one) == ["b" * 40] and "; commit `bbbbbbb`." in profile_lines(one)[0]
    assert f"| git commit | `{'b' * 40}` |" in results_markdown(one)


def test_seed_counts_read_as_words():
    from ssinfnet.book.verdict import _seeds_text

    assert _seeds_text({"n_seeds": 1, "n_images": 48}) == "1 seed × 48 images"
    assert _seeds_text({"n_seeds": 3.0, "n_images": 48, "seeds_failed": "none"}) == "3 seeds × 48 images"
    assert _seeds_text({"n_seeds": 3, "n_images": 48, "seeds_failed": "1"}) == "3 seeds × 48 images, failed: 1"


def test_wall_times_add_what_reused_trainings_recorded(tmp_path):
    (tmp_path / "finetune" / "m").mkdir(parents=True)
    (tmp_path / "finetune" / "m" / "history.csv").write_text("kind,wall_s\nepoch,100.0\nepoch,600.0\n")
    manifest = {"profile": "cpu", "stages": {
        "notebook:03_single": {"wall_time_s": 1200.0}, "notebook:04_multi": {"wall_time_s": 300.0},
        "04_multi": {"reused": {"finetune/m": {"trained_at_commit": "a" * 40}}}}}
    page = results_markdown(manifest, tmp_path)
    assert "04_multi reused trainings of an earlier execution" in page
    assert "the book took about 35.0 min, against 25.0 min summed over the last executions" in page
    assert "| 03_single | 1200.0 |  |" in page and "| 04_multi | 300.0 | 600.0 |" in page
    (tmp_path / "finetune" / "m" / "history.csv").unlink()
    page = results_markdown(manifest, tmp_path)
    assert "| 04_multi | 300.0 | not readable |" in page and "the book took about" not in page
