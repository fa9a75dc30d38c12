"""Bad scenario input: one line naming what and where (the line number), exit 2."""

from __future__ import annotations

import pytest

from ptreplay.cli import main

INIT = '{"op":"init","ia_bits":40}'
MAP = '{"op":"map","addr":"0x1000","size":"0x1000","phys":"0x100001000","prot":["R","W"]}'

CASES = {
    "unknown_op": ([INIT, '{"op":"frobnicate","addr":"0x1000"}'], 2, "unknown op 'frobnicate'"),
    "not_json": ([INIT, '{"op":"map",'], 2, "not a JSON object"),
    "not_an_object": (["[1,2]"], 1, "not a JSON object"),
    "missing_op": (['{"addr":"0x1000"}'], 1, "missing field 'op'"),
    "op_not_a_string": (['{"op":7}'], 1, "op: expected a string"),
    "missing_field": ([INIT, '{"op":"map","addr":"0x1000","size":"0x1000","prot":["R"]}'], 2,
                      "missing field 'phys'"),
    "bad_hex": ([INIT, MAP.replace('"0x1000"', '"0x10zz"', 1)], 2, "bad number '0x10zz'"),
    "float": ([INIT, MAP.replace('"0x1000"', "4096.0", 1)], 2, "bad number 4096.0"),
    "negative": ([INIT, MAP.replace('"0x1000"', "-4096", 1)], 2, "out of range"),
    "bool_number": ([INIT, MAP.replace('"0x1000"', "true", 1)], 2, "expected a number"),
    "ipa_beyond_u64": ([INIT, MAP.replace('"0x1000"', '"0x10000000000000000"', 1)], 2,
                       "out of range (not a u64)"),
    "unknown_prot": ([INIT, MAP.replace('"W"', '"Q"')], 2, "unknown prot \"Q\""),
    "prot_not_array": ([INIT, MAP.replace('["R","W"]', '"RW"')], 2, "expected an array"),
    "bad_mc": ([INIT, MAP[:-1] + ',"mc":"some"}'], 2, 'mc: expected "none"'),
    "unknown_flag": (['{"op":"init","flags":["FAST"]}'], 1, "unknown flag \"FAST\""),
    "fwb_not_bool": (['{"op":"init","fwb":1}'], 1, "fwb: expected true or false"),
    "op_before_init": ([MAP], 1, "map before init"),
    "op_after_destroy": ([INIT, '{"op":"destroy"}', '{"op":"dump"}'], 3, "dump before init"),
    "init_while_live": ([INIT, "", "# comment", INIT], 4, "init while a page table is live"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_scenario_line_exits_2_with_one_line(case, tmp_path, capsys):
    lines, line_no, what = CASES[case]
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as exc:
        main(["model", "run", str(path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"ptreplay: error: {path}: "), err
    assert what in err, err
    assert err.rstrip().endswith(f"at line {line_no}"), err


def test_software_prot_bits_are_6_1_only(tmp_path, capsys):
    path = tmp_path / "s.jsonl"
    path.write_text(INIT + "\n" + MAP.replace('"W"', '"SW0"') + "\n")
    main_ok = None
    try:
        main(["model", "run", str(path), "--profile", "linux-6.1"])
    except SystemExit as exc:
        main_ok = exc.code
    assert main_ok in (None, 0)
    assert '"prot":["R","SW0"],"ret":0' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["model", "run", str(path), "--profile", "linux-5.13"])
    assert exc.value.code == 2
    assert "unknown prot \"SW0\"" in capsys.readouterr().err


def test_not_utf8(tmp_path, capsys):
    path = tmp_path / "s.jsonl"
    path.write_bytes(INIT.encode() + b"\n\xff\xfe\n")
    with pytest.raises(SystemExit) as exc:
        main(["model", "run", str(path)])
    assert exc.value.code == 2
    assert capsys.readouterr().err.rstrip().endswith("not UTF-8 text, at line 2")


def test_missing_file_and_unknown_profile(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["model", "run", str(tmp_path / "absent.jsonl")])
    assert exc.value.code == 2
    assert "cannot open" in capsys.readouterr().err
    path = tmp_path / "s.jsonl"
    path.write_text(INIT + "\n")
    with pytest.raises(SystemExit) as exc:
        main(["model", "run", str(path), "--profile", "linux-4.19"])
    assert exc.value.code == 2
    assert "unknown profile 'linux-4.19'" in capsys.readouterr().err


def test_numbers_are_echoed_as_written_and_read_like_strtoull(tmp_path, capsys):
    path = tmp_path / "s.jsonl"
    path.write_text('{"op":"init","ia_bits":"050","extra":{"a":[1, 2]},"start_level":1}\n'
                    '{"op":"map","addr":4096,"size":"4096","phys":"0X100001000","prot":["R"]}\n')
    try:
        main(["model", "run", str(path)])
    except SystemExit as exc:
        assert exc.code in (None, 0)
    out = capsys.readouterr().out.splitlines()
    # "050" is octal 40, as C strtoull(..., 0) reads it
    assert out[0] == '{"op":"init","ia_bits":"050","extra":{"a":[1,2]},"start_level":1,"ret":0}'
    assert out[3].startswith('{"ev":"info","ia_bits":40,')
    assert out[4] == ('{"op":"map","addr":4096,"size":"4096","phys":"0X100001000",'
                      '"prot":["R"],"ret":0}')


SPLIT = '{"op":"split","addr":"0x200000","size":"0x200000"}'
CASES_612 = {
    "unknown_map_flag": ([INIT, MAP[:-1] + ',"flags":["SHARED","QUICK"]}'], 2,
                         "unknown flag \"QUICK\""),
    "map_flags_not_array": ([INIT, MAP[:-1] + ',"flags":"SHARED"}'], 2, "expected an array"),
    "tlb_range_not_bool": (['{"op":"init","tlb_range":"yes"}'], 1,
                           "tlb_range: expected true or false"),
    "split_before_init": ([SPLIT], 1, "split before init"),
    "split_bad_mc_pages": ([INIT, SPLIT[:-1] + ',"mc_pages":-1}'], 2, "out of range"),
    "split_missing_size": ([INIT, '{"op":"split","addr":"0x0"}'], 2, "missing field 'size'"),
    "young_mkold_not_bool": ([INIT, '{"op":"test_clear_young","addr":"0x0","mkold":1}'], 2,
                             "mkold: expected true or false"),
    "young_bad_size": ([INIT, '{"op":"test_clear_young","addr":"0x0","size":"x"}'], 2,
                       "bad number 'x'"),
}


@pytest.mark.parametrize("profile", ["linux-6.12", "linux-6.12-16k"])
@pytest.mark.parametrize("case", sorted(CASES_612))
def test_bad_612_scenario_line_exits_2_with_one_line(case, profile, tmp_path, capsys):
    lines, line_no, what = CASES_612[case]
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as exc:
        main(["model", "run", str(path), "--profile", profile])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert what in err, err
    assert err.rstrip().endswith(f"at line {line_no}"), err


def test_612_ops_and_names_are_612_only(tmp_path, capsys):
    """split, test_clear_young and NORMAL_NC are 6.12's; older profiles echo and ignore the
    6.12 fields (map flags, tlb_range)."""
    for lines, what in (([INIT, SPLIT], "unknown op 'split'"),
                        ([INIT, '{"op":"test_clear_young","addr":"0x0"}'],
                         "unknown op 'test_clear_young'"),
                        ([INIT, MAP.replace('"W"', '"NORMAL_NC"')], "unknown prot \"NORMAL_NC\"")):
        path = tmp_path / "s.jsonl"
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(SystemExit) as exc:
            main(["model", "run", str(path), "--profile", "linux-6.1"])
        assert exc.value.code == 2
        assert what in capsys.readouterr().err
    path = tmp_path / "s.jsonl"
    path.write_text('{"op":"init","tlb_range":"ignored"}\n' + MAP[:-1] + ',"flags":[7]}\n')
    try:
        main(["model", "run", str(path), "--profile", "linux-6.1"])
    except SystemExit as exc:
        assert exc.code in (None, 0)
    assert '"flags":[7],"ret":0' in capsys.readouterr().out
