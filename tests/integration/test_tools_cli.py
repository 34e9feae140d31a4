"""imagecatcher-tools from the command line, new and old flags, both engines."""

from __future__ import annotations

from pathlib import Path

from imagecatcher.config import Config
from tests.conftest import FIXTURES, MariaDB
from tests.integration.daemon import run_tool, write_config

CALIBRATION_FILE = FIXTURES / "141028_lens_correction_with_offset.json"


def test_init_status_downgrade_upgrade(tmp_path: Path, engine_config: Config) -> None:
    """db-init, db-status, db-downgrade --to 0 and db-upgrade work from the shell."""
    cfg = str(write_config(tmp_path, engine_config))
    assert run_tool(["--config", cfg, "db-init"], tmp_path).returncode == 0
    status = run_tool(["--config", cfg, "db-status"], tmp_path)
    assert status.returncode == 0 and "initialised: yes" in status.stdout
    assert "image_acq_time" in status.stdout and "pending" not in status.stdout
    down = run_tool(["--config", cfg, "db-downgrade", "--to", "0"], tmp_path)
    assert down.returncode == 0, down.stderr
    assert "applied" not in run_tool(["--config", cfg, "db-status"], tmp_path).stdout
    up = run_tool(["--config", cfg, "db-upgrade"], tmp_path)
    assert up.returncode == 0 and "[1, 2" in up.stdout


def test_import_calibration(tmp_path: Path, engine_config: Config) -> None:
    """import-calibration of the fixture succeeds twice and reports the count."""
    cfg = str(write_config(tmp_path, engine_config))
    assert run_tool(["--config", cfg, "db-init"], tmp_path).returncode == 0
    for _ in range(2):
        result = run_tool(
            [
                "--config",
                cfg,
                "import-calibration",
                "--calibration",
                str(CALIBRATION_FILE),
                "--mask_root",
                "file:///masks",
            ],
            tmp_path,
        )
        assert result.returncode == 0, result.stderr
        assert "Imported 12 calibration(s)" in result.stdout


def test_import_errors_are_reported(tmp_path: Path, engine_config: Config) -> None:
    """An unreadable or invalid calibration file exits 1 with a message (Q25)."""
    cfg = str(write_config(tmp_path, engine_config))
    assert run_tool(["--config", cfg, "db-init"], tmp_path).returncode == 0
    missing = run_tool(
        [
            "--config",
            cfg,
            "import-calibration",
            "--calibration",
            str(tmp_path / "none.json"),
        ],
        tmp_path,
    )
    assert missing.returncode == 1 and "Cannot read" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": "x", "metadata": {"calibration_data": "14102"}}]')
    result = run_tool(
        ["--config", cfg, "import-calibration", "--calibration", str(bad)], tmp_path
    )
    assert result.returncode == 1 and "Wrong calibration date" in result.stderr


def test_old_flags_on_mariadb(tmp_path: Path, mariadb: MariaDB) -> None:
    """The old -tool/-dbhost/-dbname/-dbuser/-dbpass flags drive MySQL."""
    admin = mariadb.admin()
    with admin.cursor() as cur:
        cur.execute("CREATE DATABASE ic_old_flags")
    admin.close()
    flags = [
        "-dbhost",
        f"127.0.0.1:{mariadb.port}",
        "-dbname",
        "ic_old_flags",
        "-dbuser",
        mariadb.user,
        "-dbpass",
        mariadb.password,
    ]
    assert run_tool([*flags, "-tool", "db-init"], tmp_path).returncode == 0
    down = run_tool([*flags, "-tool", "db-downgrade", "-n", "2"], tmp_path)
    assert down.returncode == 0 and "Reverted migrations: [" in down.stdout
    up = run_tool([*flags, "-tool", "DB-UPGRADE"], tmp_path)
    assert up.returncode == 0 and "Applied migrations: [" in up.stdout
    cal = run_tool(
        [*flags, "-tool", "import-calibration", "-calibration", str(CALIBRATION_FILE)],
        tmp_path,
    )
    assert cal.returncode == 0, cal.stderr


def test_old_tool_none_and_unknown(tmp_path: Path) -> None:
    """-tool none exits 1 with the old message; an unknown tool is a usage error."""
    none = run_tool(["-tool", "none"], tmp_path)
    assert none.returncode == 1 and "No tool has been specified" in none.stderr
    unknown = run_tool(["-tool", "explode"], tmp_path)
    assert unknown.returncode == 2
