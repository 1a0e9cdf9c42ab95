# Receive one file through this PowerShell process's stdin (ferry's WinRM upload).
#
# Prints `##ferry-present` and stops when $Path already holds a file with $Sha256 (nothing is sent). Otherwise
# defines Add-FerryChunk and Complete-FerryUpload in the global scope and prints `##ferry-ready`; ferry then
# writes lines `Add-FerryChunk '<base64>'` (hundreds of KB each) and a final `Complete-FerryUpload`. The bytes
# go to a temp file beside $Path while a SHA-256 is computed over them; only a match is moved into place.
# With -Continue the process stays open after `##ferry-present` and after a completed upload: ferry's next stdin
# line runs the deployment script in the same PowerShell invocation (one invocation per install).
param(
    [Parameter(Mandatory = $true)][string]$Path,
    [Parameter(Mandatory = $true)][string]$Sha256,
    [switch]$Continue
)

$expected = $Sha256.ToLowerInvariant()
if (Test-Path -LiteralPath $Path -PathType Leaf) {
    $current = (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
    if ($current -eq $expected) {
        Write-Output '##ferry-present'
        [Console]::Out.Flush()
        if ($Continue) {
            return
        }
        exit 0
    }
}
$directory = Split-Path -Parent $Path
if ($directory) {
    New-Item -ItemType Directory -Force -Path $directory | Out-Null
}
$temp = Join-Path $directory ('.' + (Split-Path -Leaf $Path) + '.ferry-' + [Guid]::NewGuid().ToString('N').Substring(0, 12))
$global:FerryUpload = @{
    Path     = $Path
    Temp     = $temp
    Expected = $expected
    Stream   = [IO.File]::Open($temp, [IO.FileMode]::CreateNew, [IO.FileAccess]::Write, [IO.FileShare]::None)
    Hash     = [Security.Cryptography.SHA256]::Create()
    Bytes    = [long]0
    Continue = [bool]$Continue
}

function global:Stop-FerryUpload([string]$Message, [int]$Code) {
    $upload = $global:FerryUpload
    try { $upload.Stream.Dispose() } catch { }
    Remove-Item -LiteralPath $upload.Temp -Force -ErrorAction SilentlyContinue
    [Console]::Error.WriteLine('ERROR: ' + $Message)
    [Console]::Error.Flush()
    exit $Code
}

function global:Add-FerryChunk([string]$Chunk) {
    $upload = $global:FerryUpload
    try {
        $bytes = [Convert]::FromBase64String($Chunk)
        $upload.Stream.Write($bytes, 0, $bytes.Length)
        [void]$upload.Hash.TransformBlock($bytes, 0, $bytes.Length, $null, 0)
        $upload.Bytes += $bytes.Length
    }
    catch {
        Stop-FerryUpload ('writing ' + $upload.Temp + ' failed: ' + $_.Exception.Message) 3
    }
}

function global:Complete-FerryUpload {
    $upload = $global:FerryUpload
    try {
        $upload.Stream.Dispose()
        [void]$upload.Hash.TransformFinalBlock((New-Object byte[] 0), 0, 0)
        $actual = -join ($upload.Hash.Hash | ForEach-Object { $_.ToString('x2') })
    }
    catch {
        Stop-FerryUpload ('finishing ' + $upload.Temp + ' failed: ' + $_.Exception.Message) 3
    }
    if ($actual -ne $upload.Expected) {
        Stop-FerryUpload ($upload.Path + ' arrived with sha256 ' + $actual + ', expected ' + $upload.Expected) 4
    }
    Move-Item -LiteralPath $upload.Temp -Destination $upload.Path -Force
    Write-Output ('##ferry-uploaded ' + $upload.Bytes + ' ' + $actual)
    [Console]::Out.Flush()
    if ($upload.Continue) {
        return
    }
    exit 0
}

Write-Output '##ferry-ready'
[Console]::Out.Flush()
