# Installs zccache on Windows from a release archive: zccache.exe, zccache-daemon.exe,
# zccache-ci.exe and zccache-download.exe.
#
#   powershell -ExecutionPolicy Bypass -c "irm https://github.com/zackees/zccache/releases/latest/download/install.ps1 | iex"
#   powershell -ExecutionPolicy Bypass -c "$env:ZCCACHE_INSTALL_MODE='global'; irm https://github.com/zackees/zccache/releases/latest/download/install.ps1 | iex"
#
# Environment:
#   ZCCACHE_INSTALL_MODE  'user' (default): into %USERPROFILE%\.local\bin, added to the user's PATH;
#                         'global': into %ProgramFiles%\zccache\bin, added to the machine's PATH
#                         (run from an elevated PowerShell: "Run as administrator")
#   ZCCACHE_INSTALL_DIR   install into this directory instead (PATH as for the mode)
#   ZCCACHE_VERSION       the release to install, X.Y.Z (default: the version this script was
#                         released with, else the latest release)
#   ZCCACHE_RELEASE_URL   where zccache-vX.Y.Z-<arch>-pc-windows-msvc.zip and its .sha256 are
#                         (default https://github.com/zackees/zccache/releases/download/vX.Y.Z)
#
# The archive is checked against its .sha256 file and refused if any member would land
# outside the directory it is unpacked in. In GitHub Actions (GITHUB_PATH set) the bin
# directory is added to the job's PATH for the next steps.
#
# Windows PowerShell 5.1 and PowerShell 7. Run through `iex`, a script shares the caller's
# session: all of it is inside one script block (its variables, functions and preferences stay
# there), and a failure is a terminating error, never `exit` (which would close the caller's
# window). ASCII only, so that `irm` decodes it the same everywhere.

& {
    $ErrorActionPreference = 'Stop'
    # Invoke-WebRequest's progress bar slows Windows PowerShell 5.1's downloads many times over.
    $ProgressPreference = 'SilentlyContinue'
    Set-StrictMode -Version 2.0

    # Set by `scripts/build-release.sh --archive` in the copy it publishes with a release.
    $StampedVersion = ''

    # The repository (ZCCACHE_REPO_URL: a mirror with GitHub's layout, or a test server).
    $Repo = 'https://github.com/zackees/zccache'
    if ([Environment]::GetEnvironmentVariable('ZCCACHE_REPO_URL')) {
        $Repo = ([Environment]::GetEnvironmentVariable('ZCCACHE_REPO_URL')).TrimEnd('/')
    }
    $Binaries = @('zccache', 'zccache-daemon', 'zccache-ci', 'zccache-download')

    function Fail([string]$Message) {
        throw "install.ps1: $Message"
    }

    function Get-Env([string]$Name) {
        [Environment]::GetEnvironmentVariable($Name)
    }

    function Test-Elevated {
        $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
        $principal = New-Object Security.Principal.WindowsPrincipal $identity
        $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
    }

    # The latest release's version, from the redirect of .../releases/latest to .../tag/vX.Y.Z
    # (read without following it; HttpWebRequest behaves alike in 5.1 and 7).
    function Get-LatestVersion {
        $url = "$Repo/releases/latest"
        $request = [System.Net.WebRequest]::Create($url)
        $request.Method = 'HEAD'
        $request.AllowAutoRedirect = $false
        $response = $null
        try {
            $response = $request.GetResponse()
        } catch {
            $e = $_.Exception
            while ($null -ne $e -and -not ($e -is [System.Net.WebException])) { $e = $e.InnerException }
            if ($null -ne $e) { $response = $e.Response }
        }
        if ($null -eq $response) { Fail "could not reach $url; set ZCCACHE_VERSION to the version to install" }
        try { $location = [string]$response.Headers['Location'] } finally { $response.Close() }
        if ($location -match '/releases/tag/v?([^/]+)$') { return $Matches[1] }
        Fail "could not find the latest release ($url does not redirect to a tag); set ZCCACHE_VERSION"
    }

    function Get-File([string]$Url, [string]$Path) {
        try {
            Invoke-WebRequest -Uri $Url -OutFile $Path -UseBasicParsing
        } catch {
            Fail "could not download ${Url}: $($_.Exception.Message)"
        }
    }

    # Adds Dir to the front of the user's or the machine's PATH in the registry, unless there.
    # The value is read unexpanded and written back as REG_EXPAND_SZ: setting it with
    # [Environment]::SetEnvironmentVariable('Path', ...) would store it as REG_SZ, and entries
    # such as %USERPROFILE%\bin would stop being expanded.
    function Add-ToPath([string]$Dir, [string]$Scope) {
        if ($Scope -eq 'Machine') {
            $key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey('SYSTEM\CurrentControlSet\Control\Session Manager\Environment', $true)
        } else {
            $key = [Microsoft.Win32.Registry]::CurrentUser.OpenSubKey('Environment', $true)
        }
        if ($null -eq $key) { Fail "cannot open the $Scope environment in the registry" }
        try {
            $current = [string]$key.GetValue('Path', '', [Microsoft.Win32.RegistryValueOptions]::DoNotExpandEnvironmentNames)
            $entries = @($current -split ';' | Where-Object { $_ -ne '' })
            foreach ($entry in $entries) {
                if ([Environment]::ExpandEnvironmentVariables($entry).TrimEnd('\') -ieq $Dir.TrimEnd('\')) { return $false }
            }
            $key.SetValue('Path', ((@($Dir) + $entries) -join ';'), [Microsoft.Win32.RegistryValueKind]::ExpandString)
        } finally {
            $key.Close()
        }
        # Setting (and removing) a variable through .NET broadcasts WM_SETTINGCHANGE, so that
        # Explorer and the terminals started from now on see the new PATH.
        $dummy = 'ZCCACHE_INSTALL_' + [guid]::NewGuid().ToString('N')
        [Environment]::SetEnvironmentVariable($dummy, '1', $Scope)
        [Environment]::SetEnvironmentVariable($dummy, [NullString]::Value, $Scope)
        return $true
    }

    if ([Environment]::OSVersion.Platform -ne [PlatformID]::Win32NT) {
        Fail "install.ps1 is for Windows; on Linux and macOS: curl -LsSf $Repo/releases/latest/download/install.sh | sh"
    }
    if ($PSVersionTable.PSVersion.Major -lt 6) {
        # Windows PowerShell 5.1 may offer only TLS 1.0/1.1, which GitHub refuses.
        [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
    }

    # The processor: PROCESSOR_ARCHITEW6432 is the machine's when this is a 32-bit PowerShell.
    $machineArch = Get-Env 'PROCESSOR_ARCHITEW6432'
    if (-not $machineArch) { $machineArch = Get-Env 'PROCESSOR_ARCHITECTURE' }
    switch ($machineArch) {
        'AMD64' { $arch = 'x86_64' }
        'ARM64' { $arch = 'aarch64' }
        default { Fail "no zccache release for the '$machineArch' processor (x86_64 and ARM64 only)" }
    }
    $triple = "$arch-pc-windows-msvc"

    # Where to: the user's or, elevated, the machine's.
    $mode = Get-Env 'ZCCACHE_INSTALL_MODE'
    if (-not $mode) { $mode = 'user' }
    $mode = $mode.ToLowerInvariant()
    if ($mode -eq 'global') {
        $binDir = Join-Path (Get-Env 'ProgramFiles') 'zccache\bin'
        $pathScope = 'Machine'
        if (-not (Test-Elevated)) {
            Fail "ZCCACHE_INSTALL_MODE=global installs into $binDir and the machine's PATH, which needs an elevated PowerShell (Run as administrator); or install for this user without ZCCACHE_INSTALL_MODE"
        }
    } elseif ($mode -eq 'user') {
        $binDir = Join-Path (Get-Env 'USERPROFILE') '.local\bin'
        $pathScope = 'User'
    } else {
        Fail "ZCCACHE_INSTALL_MODE is '$mode': 'user' (the default) or 'global'"
    }
    $installDir = Get-Env 'ZCCACHE_INSTALL_DIR'
    if ($installDir) { $binDir = $installDir }
    $binDir = [IO.Path]::GetFullPath($binDir)

    # Which release, from where.
    $version = Get-Env 'ZCCACHE_VERSION'
    if (-not $version) { $version = $StampedVersion }
    $base = Get-Env 'ZCCACHE_RELEASE_URL'
    if (-not $version) {
        if ($base) { Fail 'ZCCACHE_RELEASE_URL is set but no version: set ZCCACHE_VERSION too' }
        Write-Host '==> finding the latest release'
        $version = Get-LatestVersion
    }
    $version = $version -replace '^v', ''
    if (-not $base) { $base = "$Repo/releases/download/v$version" }
    $base = $base.TrimEnd('/')
    $name = "zccache-v$version-$triple"
    $archive = "$name.zip"

    $work = Join-Path ([IO.Path]::GetTempPath()) ('zccache-install-' + [guid]::NewGuid().ToString('N'))
    New-Item -ItemType Directory -Path $work | Out-Null
    try {
        $zipPath = Join-Path $work $archive
        $shaPath = "$zipPath.sha256"
        Write-Host "==> downloading $base/$archive"
        Get-File "$base/$archive" $zipPath
        Get-File "$base/$archive.sha256" $shaPath

        $expected = (([string](Get-Content -LiteralPath $shaPath -TotalCount 1)).Trim() -split '\s+')[0].ToLowerInvariant()
        if ($expected -notmatch '^[0-9a-f]{64}$') { Fail "$archive.sha256 holds no SHA-256: refusing to install" }
        $actual = (Get-FileHash -LiteralPath $zipPath -Algorithm SHA256).Hash.ToLowerInvariant()
        if ($actual -ne $expected) {
            Fail "checksum mismatch for ${archive}: expected $expected, downloaded $actual; refusing to install (a damaged or altered download: try again)"
        }
        Write-Host "    sha256 $actual (verified)"

        # No member may land outside the unpack directory: no absolute path, no '..'.
        Add-Type -AssemblyName System.IO.Compression.FileSystem
        $zip = [System.IO.Compression.ZipFile]::OpenRead($zipPath)
        try {
            foreach ($entry in $zip.Entries) {
                $member = $entry.FullName
                if ($member -match '^[\\/]' -or $member -match '^[A-Za-z]:') {
                    Fail "${archive}: refusing an archive member with an absolute path: $member"
                }
                if (@($member -split '[\\/]') -contains '..') {
                    Fail "${archive}: refusing an archive member outside the archive: $member"
                }
            }
        } finally {
            $zip.Dispose()
        }
        $unpacked = Join-Path $work 'unpacked'
        Expand-Archive -LiteralPath $zipPath -DestinationPath $unpacked -Force
        # One top-level directory zccache-vX.Y.Z-<triple>\ (a flat archive is accepted too).
        $src = Join-Path $unpacked $name
        if (-not (Test-Path -LiteralPath $src -PathType Container)) { $src = $unpacked }
        foreach ($bin in $Binaries) {
            if (-not (Test-Path -LiteralPath (Join-Path $src "$bin.exe") -PathType Leaf)) {
                Fail "$archive holds no $name\$bin.exe: refusing to install"
            }
        }

        # A daemon started from the old zccache.exe is stopped first (failure is no matter: none
        # may be running, or an old one may not know the command).
        $existing = Join-Path $binDir 'zccache.exe'
        if (Test-Path -LiteralPath $existing -PathType Leaf) {
            Write-Host '==> stopping a running zccache daemon, if any'
            try { & $existing stop *> $null } catch { }
        }

        # Every new file is written first (.NAME.exe.new), then each is moved into place. A
        # program still running cannot be overwritten on Windows, but it can be renamed: the
        # old file is moved aside (.NAME.exe.<id>.old) and removed once nothing runs it.
        New-Item -ItemType Directory -Force -Path $binDir | Out-Null
        Get-ChildItem -LiteralPath $binDir -Filter '.zccache*.old' -Force -ErrorAction SilentlyContinue |
            Remove-Item -Force -ErrorAction SilentlyContinue
        foreach ($bin in $Binaries) {
            Copy-Item -LiteralPath (Join-Path $src "$bin.exe") -Destination (Join-Path $binDir ".$bin.exe.new") -Force
        }
        foreach ($bin in $Binaries) {
            $dest = Join-Path $binDir "$bin.exe"
            if (Test-Path -LiteralPath $dest) {
                $old = Join-Path $binDir (".$bin.exe.{0}.old" -f [guid]::NewGuid().ToString('N').Substring(0, 8))
                Move-Item -LiteralPath $dest -Destination $old -Force
                Remove-Item -LiteralPath $old -Force -ErrorAction SilentlyContinue
            }
            Move-Item -LiteralPath (Join-Path $binDir ".$bin.exe.new") -Destination $dest -Force
        }
    } finally {
        Remove-Item -LiteralPath $work -Recurse -Force -ErrorAction SilentlyContinue
    }
    Write-Host "==> installed zccache, zccache-daemon, zccache-ci and zccache-download into $binDir"

    if (Add-ToPath $binDir $pathScope) {
        Write-Host "    added $binDir to the $($pathScope.ToLowerInvariant())'s PATH (new terminals have it)"
    }
    if (@($env:Path -split ';' | ForEach-Object { $_.TrimEnd('\') }) -notcontains $binDir.TrimEnd('\')) {
        $env:Path = "$binDir;$env:Path"
    }
    $githubPath = Get-Env 'GITHUB_PATH'
    if ($githubPath) {
        [IO.File]::AppendAllText($githubPath, "$binDir`n")
        Write-Host "    added $binDir to GITHUB_PATH (the next steps of this job have it on PATH)"
    }

    & (Join-Path $binDir 'zccache.exe') --version
    if ($LASTEXITCODE -ne 0) { Fail "zccache --version failed (exit code $LASTEXITCODE)" }
}
