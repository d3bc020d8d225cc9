/* bcryptprimitives.dll for Wine 8, which lacks ProcessPrng: Rust's std (since 1.78) takes
 * its random numbers from it on Windows, so no Rust program starts under Wine 8 without it.
 * Windows itself has the real one; this shim is used only by the tests run under Wine
 * (tests/windows/wine-runner.sh builds it with mingw and puts it beside each test program).
 * It answers with RtlGenRandom (advapi32's SystemFunction036), the system's CSPRNG. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
