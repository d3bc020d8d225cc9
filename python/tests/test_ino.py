"""convert_ino: the sketch converter, from Python."""

import subprocess

import pytest

from zccache import ZcCacheError
from zccache.ino import convert_ino

SKETCH = """#define LED 13
void setup() { configure(LED); }
void loop() { blink(); }
void configure(int pin) { (void)pin; }
void blink() {}
"""


def test_a_sketch_becomes_cpp_that_gcc_accepts(tmp_path):
    (tmp_path / "Arduino.h").write_text("#pragma once\n")
    src = tmp_path / "Blink.ino"
    src.write_text(SKETCH)
    dst = tmp_path / "build" / "Blink.ino.cpp"
    prototypes = convert_ino(src, dst)
    assert prototypes == ["void setup();", "void loop();", "void configure(int pin);", "void blink();"]
    text = dst.read_text()
    assert text.startswith('#include <Arduino.h>\n#line 1 "%s"\n' % src)
    done = subprocess.run(["g++", "-fsyntax-only", "-I", str(tmp_path), str(dst)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_without_the_arduino_include(tmp_path):
    src = tmp_path / "s.ino"
    src.write_text("void setup() {}\n")
    convert_ino(src, tmp_path / "s.cpp", arduino_include=False)
    assert not (tmp_path / "s.cpp").read_text().startswith("#include")


def test_a_missing_sketch_is_an_error_and_writes_nothing(tmp_path):
    with pytest.raises(ZcCacheError, match="missing.ino"):
        convert_ino(tmp_path / "missing.ino", tmp_path / "out.cpp")
    assert not (tmp_path / "out.cpp").exists()
