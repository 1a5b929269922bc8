// A small header with testlib.h's checker interface and conventions, written for
// codeexec's tests: registerTestlibCmd(argc, argv) opens inf/ouf/ans from
// "checker input output answer"; quitf ends with testlib's exit codes (0 ok, 1 wrong
// answer, 2 presentation error, 3 fail) and its message on stderr; quitp ends with
// exit code 7 and "points X message". Reading past the end of the contestant's
// output is a wrong answer, as in testlib.
#pragma once
#include <cctype>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>

enum TResult { _ok = 0, _wa = 1, _pe = 2, _fail = 3, _points = 7 };

static void __mini_quit(TResult result, const char* prefix, const std::string& message) {
    std::fprintf(stderr, "%s%s\n", prefix, message.c_str());
    std::exit(result);
}

static std::string __mini_format(const char* fmt, va_list ap) {
    char buffer[4096];
    std::vsnprintf(buffer, sizeof buffer, fmt, ap);
    return buffer;
}

struct InStream {
    FILE* file = nullptr;
    TResult on_eof = _fail;
    void open(const char* path, TResult eof_result) {
        file = std::fopen(path, "r");
        on_eof = eof_result;
        if (!file) __mini_quit(_fail, "FAIL ", std::string("cannot open ") + path);
    }
    void attach(FILE* stream, TResult eof_result) {
        file = stream;
        on_eof = eof_result;
    }
    void skipBlanks() {
        int c;
        while ((c = std::fgetc(file)) != EOF && std::isspace(c)) {}
        if (c != EOF) std::ungetc(c, file);
    }
    bool seekEof() {
        skipBlanks();
        int c = std::fgetc(file);
        if (c == EOF) return true;
        std::ungetc(c, file);
        return false;
    }
    std::string readToken() {
        skipBlanks();
        std::string token;
        int c;
        while ((c = std::fgetc(file)) != EOF && !std::isspace(c)) token += static_cast<char>(c);
        if (token.empty())
            __mini_quit(on_eof, on_eof == _wa ? "wrong answer " : "FAIL ", "unexpected end of file");
        return token;
    }
    long long readLong() {
        std::string token = readToken();
        char* end = nullptr;
        long long value = std::strtoll(token.c_str(), &end, 10);
        if (*end != '\0')
            __mini_quit(on_eof == _wa ? _pe : _fail, "wrong output format ",
                        "expected an integer, found " + token);
        return value;
    }
    int readInt() { return static_cast<int>(readLong()); }
};

static InStream inf, ouf, ans;
static FILE* tout = nullptr;

// An interactor: "interactor input output": inf is the test's input, ouf the
// program's output (our stdin), tout a file for a checker; stdout goes to the program.
inline void registerInteraction(int argc, char* argv[]) {
    if (argc < 3) __mini_quit(_fail, "FAIL ", "usage: interactor input output [answer]");
    inf.open(argv[1], _fail);
    ouf.attach(stdin, _wa);
    tout = std::fopen(argv[2], "w");
    if (!tout) __mini_quit(_fail, "FAIL ", "cannot open the output file");
    if (argc > 3) ans.open(argv[3], _fail);
}

inline void registerTestlibCmd(int argc, char* argv[]) {
    if (argc < 4) __mini_quit(_fail, "FAIL ", "usage: checker input output answer");
    inf.open(argv[1], _fail);
    ouf.open(argv[2], _wa);
    ans.open(argv[3], _fail);
}

inline void quitf(TResult result, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::string message = __mini_format(fmt, ap);
    va_end(ap);
    const char* prefix = result == _ok ? "ok " : result == _wa ? "wrong answer "
                       : result == _pe ? "wrong output format " : "FAIL ";
    __mini_quit(result, prefix, message);
}

inline void quitp(double points, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::string message = __mini_format(fmt, ap);
    va_end(ap);
    char prefix[64];
    std::snprintf(prefix, sizeof prefix, "points %.10g ", points);
    __mini_quit(_points, prefix, message);
}
