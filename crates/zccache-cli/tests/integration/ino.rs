//! `zccache ino`: an Arduino sketch converted to C++ that the real g++ compiles and links
//! against a small Arduino core (the sketch calls functions it defines further down), and
//! whose diagnostics point at the sketch's own lines.

use crate::sandbox::*;
use std::process::Command;

/// A few functions of the Arduino core, printing what they are asked to do, and a `main`
/// that runs `setup()` once and `loop()` three times.
fn arduino_core(sb: &Sandbox) {
    sb.write_old(
        "core/Arduino.h",
        "#pragma once\n#define OUTPUT 1\n#define HIGH 1\n#define LOW 0\n\
         void pinMode(int pin, int mode);\nvoid digitalWrite(int pin, int value);\n\
         void delay(unsigned long ms);\n\
         struct SerialPort { void begin(long baud); void println(int value); };\n\
         extern SerialPort Serial;\nvoid setup();\nvoid loop();\n",
    );
    sb.write_old(
        "core/main.cpp",
        "#include <stdio.h>\n#include \"Arduino.h\"\nSerialPort Serial;\n\
         void pinMode(int pin, int mode) { printf(\"pin %d mode %d\\n\", pin, mode); }\n\
         void digitalWrite(int pin, int value) { printf(\"pin %d = %d\\n\", pin, value); }\n\
         void delay(unsigned long) {}\nvoid SerialPort::begin(long baud) { printf(\"serial %ld\\n\", baud); }\n\
         void SerialPort::println(int value) { printf(\"%d\\n\", value); }\n\
         int main() { setup(); for (int i = 0; i < 3; i++) loop(); return 0; }\n",
    );
}

const BLINK: &str = r#"// Blink, with helpers defined after their first use.
#define LED 13

int state = LOW;

void setup() {
  configure(LED);
  Serial.begin(9600);
}

void loop() {
  toggle();
  Serial.println(count());
  delay(500);
}

void configure(int pin) { pinMode(pin, OUTPUT); }

void toggle() {
  state = state == LOW ? HIGH : LOW;
  digitalWrite(LED, state);
}

int count() {
  static int n = 0;
  return ++n;
}
"#;

#[test]
fn a_converted_sketch_compiles_links_and_runs() {
    let sb = Sandbox::new();
    arduino_core(&sb);
    sb.write_old("Blink/Blink.ino", BLINK);
    // As written, the sketch is not C++: its helpers are used before they are declared.
    let bare = sb.bare(
        ".",
        &[
            "g++",
            "-include",
            "core/Arduino.h",
            "-x",
            "c++",
            "-c",
            "Blink/Blink.ino",
            "-o",
            "raw.o",
        ],
    );
    assert!(!bare.status.success());
    let stderr = String::from_utf8_lossy(&bare.stderr);
    assert!(
        stderr.contains("configure") && stderr.contains("was not declared"),
        "{stderr}"
    );
    // zccache 1.15's flags: --clang-arg is accepted (and not needed).
    sb.ok(&[
        "ino",
        "--input",
        "Blink/Blink.ino",
        "--output",
        "build/Blink.ino.cpp",
        "--clang-arg",
        "-DARDUINO=10819",
    ]);
    let cpp = sb.read_string("build/Blink.ino.cpp");
    assert!(
        cpp.starts_with("#include <Arduino.h>\n#line 1 \"Blink/Blink.ino\"\n"),
        "{cpp}"
    );
    let link = sb.bare(
        ".",
        &[
            "g++",
            "-Icore",
            "build/Blink.ino.cpp",
            "core/main.cpp",
            "-o",
            "blink",
        ],
    );
    assert_success(&link, &["g++ build/Blink.ino.cpp"]);
    let run = Command::new(sb.path("blink")).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "pin 13 mode 1\nserial 9600\npin 13 = 1\n1\npin 13 = 0\n2\npin 13 = 1\n3\n"
    );
}

#[test]
fn diagnostics_name_the_sketch_and_its_lines() {
    let sb = Sandbox::new();
    arduino_core(&sb);
    // Line 14: an error after the point where the prototypes go in.
    let broken = BLINK.replace("  delay(500);\n", "  delay(undefined_interval);\n");
    assert_eq!(broken.lines().nth(13), Some("  delay(undefined_interval);"));
    sb.write_old("Broken.ino", &broken);
    sb.ok(&["ino", "--input", "Broken.ino", "--output", "Broken.ino.cpp"]);
    let out = sb.bare(".", &["g++", "-Icore", "-c", "Broken.ino.cpp", "-o", "b.o"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Broken.ino:14:"), "{stderr}");
    assert!(!stderr.contains("Broken.ino.cpp:"), "{stderr}");
}

#[test]
fn conversion_errors_are_reported() {
    let sb = Sandbox::new();
    let out = sb.run(&["ino", "--input", "missing.ino", "--output", "out.cpp"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing.ino"), "{stderr}");
    assert!(!sb.path("out.cpp").exists());
}
