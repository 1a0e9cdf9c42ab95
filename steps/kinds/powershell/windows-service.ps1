# ferry's `windows-service` step on the target: install or update a Windows Service from a package, as Octopus's
# "Deploy a Windows Service" does. The new versioned folder is complete (extracted, config files written,
# verified) before the service is touched; then: stop (with a timeout) → switch the binary path → start and wait
# for Running. If the service does not run again, its binary path goes back to the old folder and it is started
# there, so the machine is left running the release it had.
#
# Configuration goes through CIM (Win32_Service.Change) and the service's registry key, in this process: the
# account password never appears on a command line. Recovery actions use sc.exe failure (no secrets in them).
param(
    [Parameter(Mandatory = $true)][string]$Project,
    [Parameter(Mandatory = $true)][string]$Environment,
    [Parameter(Mandatory = $true)]$Package,
    [Parameter(Mandatory = $true)][string]$Folder,
    [Parameter(Mandatory = $true)][string]$Journal,
    $Overrides = @(),
    [string]$ConfigDigest = '',
    [Parameter(Mandatory = $true)][string]$ServiceName,
    [string]$DisplayName = '',
    [string]$Description = '',
    [Parameter(Mandatory = $true)][string]$Executable,
    [string]$Arguments = '',
    [ValidateSet('auto', 'delayed', 'manual', 'disabled')][string]$StartMode = 'auto',
    [ValidateSet('LocalSystem', 'NetworkService', 'LocalService', 'custom')][string]$Account = 'LocalSystem',
    [string]$UserName = '',
    [string]$Password = '',
    $Dependencies = @(),
    $Recovery = $null,
    [int]$Keep = 3,
    [int]$StopTimeoutSeconds = 120,
    [int]$StartTimeoutSeconds = 120
)

$ErrorActionPreference = 'Stop'

# ferry:include deploy-common.ps1

function Get-ServiceRecord {
    # Win32_Service carries the binary path (PathName) and the account (StartName); filtered here, not in WQL,
    # so the name is never part of a query string.
    return Get-CimInstance -ClassName Win32_Service | Where-Object { $_.Name -eq $ServiceName } | Select-Object -First 1
}

function Wait-ServiceStatus([string]$Status, [int]$Seconds) {
    $service = Get-Service -Name $ServiceName
    try {
        $service.WaitForStatus($Status, [TimeSpan]::FromSeconds($Seconds))
    }
    catch {
        $now = (Get-Service -Name $ServiceName).Status
        throw ('service ' + $ServiceName + ' did not reach ' + $Status + ' within ' + $Seconds + ' s (it is ' + $now + ')')
    }
}

function Get-StartName {
    switch ($Account) {
        'LocalSystem' { return 'LocalSystem' }
        'NetworkService' { return 'NT AUTHORITY\NetworkService' }
        'LocalService' { return 'NT AUTHORITY\LocalService' }
        default { return $UserName }
    }
}

function Set-ServiceConfiguration([string]$BinaryPath) {
    $record = Get-ServiceRecord
    $mode = 'Automatic'
    if ($StartMode -eq 'manual') {
        $mode = 'Manual'
    }
    elseif ($StartMode -eq 'disabled') {
        $mode = 'Disabled'
    }
    $change = @{ PathName = $BinaryPath; StartMode = $mode; ServiceDependencies = [string[]]@($Dependencies)
        StartName = (Get-StartName); StartPassword = $(if ($Account -eq 'custom') { $Password } else { '' }) }
    if ($DisplayName) {
        $change['DisplayName'] = $DisplayName
    }
    $outcome = Invoke-CimMethod -InputObject $record -MethodName Change -Arguments $change
    if ($outcome.ReturnValue -ne 0) {
        throw ('configuring service ' + $ServiceName + ' failed: Win32_Service.Change returned ' + $outcome.ReturnValue)
    }
    $key = 'HKLM:\SYSTEM\CurrentControlSet\Services\' + $ServiceName
    Set-ItemProperty -LiteralPath $key -Name DelayedAutostart -Value $(if ($StartMode -eq 'delayed') { 1 } else { 0 }) -Type DWord
    if ($Description) {
        Set-Service -Name $ServiceName -Description $Description
    }
    if ($null -ne $Recovery) {
        # sc.exe's actions= is action/delay pairs joined by '/'; "take no action" is an empty action: restart/60000//0
        $steps = @($Recovery.Actions | ForEach-Object { if ($_ -eq 'restart') { 'restart/' + [int]$Recovery.RestartDelayMilliseconds } else { '/0' } })
        & sc.exe failure $ServiceName reset= ([int]$Recovery.ResetPeriodSeconds) actions= ($steps -join '/') | Out-Null
        if ($LASTEXITCODE -ne 0) {
            throw ('sc.exe failure ' + $ServiceName + ' exited ' + $LASTEXITCODE)
        }
    }
}

# ---------------------------------------------------------------------------------------------- the folder
$installed = Install-Folder
$newFolder = $installed.Path
Write-Host ($(if ($installed.Reused) { 'reusing ' } else { 'extracted to ' }) + $newFolder)
$exe = Join-Path $newFolder $Executable
if (-not (Test-Path -LiteralPath $exe -PathType Leaf)) {
    throw ('the package has no ' + $Executable + ' (looked for ' + $exe + ')')
}
$binaryPath = '"' + $exe + '"' + $(if ($Arguments) { ' ' + $Arguments } else { '' })
$key = $Project + '|' + $Environment + '|' + $Package.Id + '|service|' + $ServiceName
$previous = @(Read-Journal | Where-Object { $_.key -eq $key }) | Select-Object -First 1
$oldFolder = if ($previous) { [string]$previous.folder } else { '' }

# ---------------------------------------------------------------------------------------------- the switch
$existing = Get-ServiceRecord
$created = $false
if ($null -eq $existing) {
    $create = @{ Name = $ServiceName; BinaryPathName = $binaryPath; StartupType = 'Manual' }
    if ($DisplayName) {
        $create['DisplayName'] = $DisplayName
    }
    if ($Account -eq 'custom') {
        $secure = ConvertTo-SecureString -String $Password -AsPlainText -Force
        $create['Credential'] = New-Object System.Management.Automation.PSCredential ($UserName, $secure)
    }
    New-Service @create | Out-Null
    $created = $true
    Write-Host ('created service ' + $ServiceName)
    Set-ServiceConfiguration $binaryPath
    if ($StartMode -ne 'disabled') {
        Start-Service -Name $ServiceName
        Wait-ServiceStatus 'Running' $StartTimeoutSeconds
    }
    $oldPath = ''
}
else {
    $oldPath = [string]$existing.PathName
    if ((Get-Service -Name $ServiceName).Status -ne 'Stopped') {
        Stop-Service -Name $ServiceName -Force -NoWait
        Wait-ServiceStatus 'Stopped' $StopTimeoutSeconds
    }
    try {
        Set-ServiceConfiguration $binaryPath
        if ($StartMode -ne 'disabled') {
            Start-Service -Name $ServiceName
            Wait-ServiceStatus 'Running' $StartTimeoutSeconds
        }
    }
    catch {
        $failure = $_.Exception.Message
        $revert = @{ PathName = $oldPath }
        Invoke-CimMethod -InputObject (Get-ServiceRecord) -MethodName Change -Arguments $revert | Out-Null
        try {
            Start-Service -Name $ServiceName
            Wait-ServiceStatus 'Running' $StartTimeoutSeconds
        }
        catch {
            Write-Host ('could not restart ' + $ServiceName + ' on its old binary path: ' + $_.Exception.Message)
        }
        throw ($failure + ' (' + $ServiceName + ' left on ' + $oldPath + ')')
    }
    Write-Host ('switched ' + $ServiceName + ' from ' + $oldPath + ' to ' + $binaryPath)
}

# ---------------------------------------------------------------------------------------------- journal, retention
$removed = Update-Journal $key @{ service = $ServiceName } $newFolder $oldFolder

$status = [string](Get-Service -Name $ServiceName).Status
$result = @{ folder = $newFolder; previous = $oldFolder; previousPath = $oldPath; binaryPath = $binaryPath; reused = $installed.Reused; created = $created; status = $status; removed = $removed }
Write-Output ('##ferry-result ' + (ConvertTo-Json -InputObject $result -Compress))
