# ferry's `iis-website` step on the target: install a package into a new versioned folder and point an IIS web
# site, application or virtual directory at it in one move. Modelled on Octopus's Calamari
# (Octopus.Features.IISWebSite_BeforePostDeploy.ps1): WebAdministration, every IIS call retried on transient
# errors, new sites created and then their bindings reconciled.
#
# Order matters (the lesson of Octopus's "failure to recover from unsuccessful release"): the new folder is
# complete — extracted, config files substituted, verified — before IIS is touched, and the physical path is
# switched last. If anything fails once the app pool is stopped, the path goes back to the old folder and the
# pool is started again, so the site is left serving the release it had.
param(
    [Parameter(Mandatory = $true)][string]$Project,
    [Parameter(Mandatory = $true)][string]$Environment,
    [Parameter(Mandatory = $true)]$Package,
    [Parameter(Mandatory = $true)][string]$Folder,
    [Parameter(Mandatory = $true)][string]$Journal,
    $Overrides = @(),
    [string]$ConfigDigest = '',
    [ValidateSet('website', 'application', 'virtual-directory')][string]$DeployAs = 'website',
    [Parameter(Mandatory = $true)][string]$SiteName,
    [string]$VirtualPath = '',
    $Bindings = @(),
    [ValidateSet('replace', 'merge')][string]$BindingMode = 'replace',
    $AppPool = $null,
    [bool]$AppOffline = $false,
    [int]$Keep = 3,
    [int]$MaxRetries = 5,
    [int]$RetryDelayMilliseconds = 1000,
    [int]$StopTimeoutSeconds = 120
)

$ErrorActionPreference = 'Stop'
Import-Module WebAdministration

function Invoke-Iis([string]$What, [scriptblock]$Action) {
    # Calamari's rule: IIS configuration calls fail transiently (config file locked by WAS, "the object
    # identifier does not represent a valid object"), so each is retried with a random 1x-4x delay.
    $attempt = 0
    while ($true) {
        $attempt++
        try {
            return (& $Action)
        }
        catch {
            if ($attempt -ge $MaxRetries) {
                throw ($What + ' failed after ' + $attempt + ' attempt(s): ' + $_.Exception.Message)
            }
            Write-Host ($What + ' failed (attempt ' + $attempt + ' of ' + $MaxRetries + '): ' + $_.Exception.Message + '; retrying')
            Start-Sleep -Milliseconds (Get-Random -Minimum $RetryDelayMilliseconds -Maximum (4 * $RetryDelayMilliseconds + 1))
        }
    }
}

function Wait-AppPoolState([string]$Name, [string]$State) {
    # Stop-WebAppPool returns before the worker process is gone: poll until the state is reached.
    $deadline = (Get-Date).AddSeconds($StopTimeoutSeconds)
    while ((Invoke-Iis ('Get-WebAppPoolState ' + $Name) { (Get-WebAppPoolState -Name $Name).Value }) -ne $State) {
        if ((Get-Date) -gt $deadline) {
            throw ('app pool ' + $Name + ' did not reach ' + $State + ' within ' + $StopTimeoutSeconds + ' s')
        }
        Start-Sleep -Milliseconds 200
    }
}

# ferry:include deploy-common.ps1

function Set-AppPool {
    if ($null -eq $AppPool) {
        return
    }
    $name = [string]$AppPool.Name
    $path = 'IIS:\AppPools\' + $name
    if (-not (Test-Path -LiteralPath $path)) {
        Invoke-Iis ('New-WebAppPool ' + $name) { New-WebAppPool -Name $name | Out-Null }
        Write-Host ('created app pool ' + $name)
    }
    $runtime = if ($AppPool.Runtime -eq 'no-managed-code') { '' } else { [string]$AppPool.Runtime }
    Invoke-Iis ('set managedRuntimeVersion of ' + $name) { Set-ItemProperty -LiteralPath $path -Name managedRuntimeVersion -Value $runtime }
    Invoke-Iis ('set managedPipelineMode of ' + $name) { Set-ItemProperty -LiteralPath $path -Name managedPipelineMode -Value ([string]$AppPool.Pipeline) }
    Invoke-Iis ('set startMode of ' + $name) { Set-ItemProperty -LiteralPath $path -Name startMode -Value ([string]$AppPool.StartMode) }
    if ($AppPool.Identity -eq 'SpecificUser') {
        Invoke-Iis ('set the identity of ' + $name) {
            Set-ItemProperty -LiteralPath $path -Name processModel -Value @{ identityType = 'SpecificUser'; userName = [string]$AppPool.UserName; password = [string]$AppPool.Password }
        }
    }
    else {
        Invoke-Iis ('set the identity of ' + $name) { Set-ItemProperty -LiteralPath $path -Name processModel.identityType -Value ([string]$AppPool.Identity) }
    }
}

function ConvertTo-BindingValue($Binding) {
    $ip = if ($Binding.Ip) { [string]$Binding.Ip } else { '*' }
    $flags = if ($Binding.Sni) { 1 } else { 0 }
    return @{ protocol = [string]$Binding.Protocol; bindingInformation = ($ip + ':' + $Binding.Port + ':' + $Binding.Host); sslFlags = $flags }
}

function Set-Bindings([string]$SitePath) {
    # every certificate must be there before any binding changes: a missing one leaves the site as it was
    $certificates = @{}
    foreach ($binding in @($Bindings | Where-Object { $_.Protocol -eq 'https' })) {
        $thumbprint = ([string]$binding.Thumbprint).ToUpperInvariant()
        $certificate = Get-ChildItem -LiteralPath 'Cert:\LocalMachine\My' | Where-Object { $_.Thumbprint -eq $thumbprint -and $_.HasPrivateKey }
        if (-not $certificate) {
            throw ('certificate ' + $thumbprint + ' with a private key is not in Cert:\LocalMachine\My')
        }
        $certificates[$thumbprint] = $certificate
    }
    $desired = @($Bindings | ForEach-Object { ConvertTo-BindingValue $_ })
    $current = @((Get-Item -LiteralPath $SitePath).bindings.Collection | ForEach-Object { $_.protocol + '/' + $_.bindingInformation })
    $wanted = @($desired | ForEach-Object { $_.protocol + '/' + $_.bindingInformation })
    if ($BindingMode -eq 'merge') {
        foreach ($binding in $desired) {
            if ($current -notcontains ($binding.protocol + '/' + $binding.bindingInformation)) {
                Invoke-Iis ('add binding ' + $binding.bindingInformation) { New-ItemProperty -LiteralPath $SitePath -Name bindings -Value $binding | Out-Null }
            }
        }
    }
    elseif ((Compare-Object $current $wanted)) {
        Invoke-Iis ('replace the bindings of ' + $SiteName) { Set-ItemProperty -LiteralPath $SitePath -Name bindings -Value $desired }
    }
    foreach ($binding in @($Bindings | Where-Object { $_.Protocol -eq 'https' })) {
        $thumbprint = ([string]$binding.Thumbprint).ToUpperInvariant()
        $ip = if ($binding.Ip) { [string]$binding.Ip } else { '*' }
        $web = Get-WebBinding -Name $SiteName -Protocol https -Port $binding.Port -HostHeader ([string]$binding.Host) -IPAddress $ip
        Invoke-Iis ('bind certificate ' + $thumbprint) { $web.AddSslCertificate($thumbprint, 'My') }
    }
}

# ---------------------------------------------------------------------------------------------- the folder
$installed = Install-Folder
$newFolder = $installed.Path
Write-Host ($(if ($installed.Reused) { 'reusing ' } else { 'extracted to ' }) + $newFolder)

# ---------------------------------------------------------------------------------------------- IIS objects
Set-AppPool
$poolName = if ($null -ne $AppPool) { [string]$AppPool.Name } else { $null }
$sitePath = 'IIS:\Sites\' + $SiteName
$iisPath = if ($DeployAs -eq 'website') { $sitePath } else { $sitePath + ($VirtualPath -replace '/', '\') }
$created = $false
if ($DeployAs -eq 'website') {
    if (-not (Test-Path -LiteralPath $sitePath)) {
        $first = @($Bindings)[0]
        $id = 1 + [int]((Get-ChildItem -LiteralPath 'IIS:\Sites' | Measure-Object -Property id -Maximum).Maximum)
        Invoke-Iis ('New-Website ' + $SiteName) {
            New-Website -Name $SiteName -Id $id -PhysicalPath $newFolder -ApplicationPool $poolName -Port $first.Port -HostHeader ([string]$first.Host) | Out-Null
        }
        $created = $true
        Write-Host ('created web site ' + $SiteName)
    }
    Set-Bindings $sitePath
    Invoke-Iis ('set the app pool of ' + $SiteName) { Set-ItemProperty -LiteralPath $sitePath -Name applicationPool -Value $poolName }
}
else {
    if (-not (Test-Path -LiteralPath $sitePath)) {
        throw ('web site ' + $SiteName + ' does not exist: a ' + $DeployAs + ' needs its parent site')
    }
    if (-not (Test-Path -LiteralPath $iisPath)) {
        $name = $VirtualPath.TrimStart('/')
        if ($DeployAs -eq 'application') {
            Invoke-Iis ('New-WebApplication ' + $VirtualPath) { New-WebApplication -Site $SiteName -Name $name -PhysicalPath $newFolder -ApplicationPool $poolName | Out-Null }
        }
        else {
            Invoke-Iis ('New-WebVirtualDirectory ' + $VirtualPath) { New-WebVirtualDirectory -Site $SiteName -Name $name -PhysicalPath $newFolder | Out-Null }
        }
        $created = $true
    }
    elseif ($DeployAs -eq 'application') {
        Invoke-Iis ('set the app pool of ' + $VirtualPath) { Set-ItemProperty -LiteralPath $iisPath -Name applicationPool -Value $poolName }
    }
}

# ---------------------------------------------------------------------------------------------- the switch
$oldFolder = [string](Get-Item -LiteralPath $iisPath).physicalPath
$offline = $null
if (-not $created -and $oldFolder -ne $newFolder) {
    if ($AppOffline -and (Test-Path -LiteralPath $oldFolder)) {
        $offline = Join-Path $oldFolder 'app_offline.htm'
        [IO.File]::WriteAllText($offline, '<html><body>Down for a moment: a new release is being installed.</body></html>')
    }
    if ($poolName) {
        Invoke-Iis ('Stop-WebAppPool ' + $poolName) {
            if ((Get-WebAppPoolState -Name $poolName).Value -ne 'Stopped') { Stop-WebAppPool -Name $poolName }
        }
        Wait-AppPoolState $poolName 'Stopped'
    }
    try {
        Invoke-Iis ('switch ' + $iisPath + ' to ' + $newFolder) { Set-ItemProperty -LiteralPath $iisPath -Name physicalPath -Value $newFolder }
        if ($poolName) {
            Invoke-Iis ('Start-WebAppPool ' + $poolName) { Start-WebAppPool -Name $poolName }
            Wait-AppPoolState $poolName 'Started'
        }
    }
    catch {
        $failure = $_.Exception.Message
        Set-ItemProperty -LiteralPath $iisPath -Name physicalPath -Value $oldFolder
        if ($poolName) {
            try { Start-WebAppPool -Name $poolName } catch { Write-Host ('could not restart ' + $poolName + ': ' + $_.Exception.Message) }
        }
        if ($offline) {
            Remove-Item -LiteralPath $offline -Force -ErrorAction SilentlyContinue
        }
        throw ($failure + ' (' + $iisPath + ' left on ' + $oldFolder + ')')
    }
    Write-Host ('switched ' + $iisPath + ' from ' + $oldFolder + ' to ' + $newFolder)
}
elseif ($poolName) {
    Invoke-Iis ('Start-WebAppPool ' + $poolName) {
        if ((Get-WebAppPoolState -Name $poolName).Value -ne 'Started') { Start-WebAppPool -Name $poolName }
    }
    Wait-AppPoolState $poolName 'Started'
}
if ($DeployAs -eq 'website') {
    Invoke-Iis ('Start-Website ' + $SiteName) {
        if ((Get-WebsiteState -Name $SiteName).Value -ne 'Started') { Start-Website -Name $SiteName }
    }
}
if ($offline) {
    Remove-Item -LiteralPath $offline -Force -ErrorAction SilentlyContinue
}

# ---------------------------------------------------------------------------------------------- journal, retention
$key = $Project + '|' + $Environment + '|' + $Package.Id + '|' + $SiteName + '|' + $VirtualPath
$removed = Update-Journal $key @{ site = $SiteName; virtualPath = $VirtualPath } $newFolder $oldFolder

$result = @{ folder = $newFolder; previous = $oldFolder; reused = $installed.Reused; created = $created; removed = $removed }
Write-Output ('##ferry-result ' + (ConvertTo-Json -InputObject $result -Compress))
