<#
.SYNOPSIS
Build Studio for Windows: the PyInstaller onedir build, checked with its own self-test, then the
Inno Setup installer dist\Studio-Setup-<version>[-cuda].exe.

.DESCRIPTION
  powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1 [-Flavour cpu|cuda]
                                     [-InstallTorch] [-NoInstall] [-SkipSelfTest]

  -Flavour cpu|cuda  which torch the build carries (default cpu); the build stops when the
                     installed torch is not that flavour.
  -InstallTorch      first install the matching torch from download.pytorch.org
                     ($env:STUDIO_TORCH_INDEX overrides the index URL).
  -NoInstall         use the environment as it is (no `pip install -e .[packaging]`).

Needs Python 3.10+ (run it in a virtual environment made for the build) and Inno Setup 6
(ISCC.exe on PATH or in its default folder). Signing: set STUDIO_SIGN_PFX (a .pfx file) and
STUDIO_SIGN_PASSWORD and the executables and the installer are signed with signtool.
#>
param(
  [ValidateSet("cpu", "cuda")][string]$Flavour = "cpu",
  [switch]$InstallTorch,
  [switch]$NoInstall,
  [switch]$SkipSelfTest
)
$ErrorActionPreference = "Stop"
$Root = Resolve-Path (Join-Path $PSScriptRoot "..\..")
Set-Location $Root
$Python = if ($env:PYTHON) { $env:PYTHON } else { "python" }

function Invoke-Checked([string]$What, [scriptblock]$Block) {
  & $Block
  if ($LASTEXITCODE -ne 0) { throw "$What failed (exit code $LASTEXITCODE)" }
}

$Version = (Select-String -Path "studio\__init__.py" -Pattern '__version__ = "([^"]+)"').Matches[0].Groups[1].Value
$Index = if ($env:STUDIO_TORCH_INDEX) { $env:STUDIO_TORCH_INDEX }
         elseif ($Flavour -eq "cuda") { "https://download.pytorch.org/whl/cu128" }
         else { "https://download.pytorch.org/whl/cpu" }

# Versions come from the lock (constraints.txt): an upstream release cannot change the app.
if ($InstallTorch) { Invoke-Checked "installing torch" { & $Python -m pip install -c constraints.txt torch --index-url $Index } }
if (-not $NoInstall) { Invoke-Checked "installing Studio" { & $Python -m pip install -c constraints.txt -e ".[packaging]" } }
Invoke-Checked "checking the locked versions" { & $Python tools/lock.py --check-env }
# torch.version.cuda is None exactly in a CPU-only build.
Invoke-Checked "the torch flavour check" {
  & $Python -c "import sys, torch; f = sys.argv[1]; c = torch.version.cuda; sys.exit(0 if (f == 'cpu') == (c is None) else 'the installed torch ' + torch.__version__ + ' is not the ' + f + ' flavour (use -InstallTorch)')" $Flavour
}

$Work = Join-Path $Root "build\pyinstaller-$Flavour"
$OneDirParent = Join-Path $Root "build\onedir-$Flavour"
$Bundle = Join-Path $OneDirParent "Studio"
if (Test-Path $OneDirParent) { Remove-Item -Recurse -Force $OneDirParent }
Invoke-Checked "PyInstaller" {
  & $Python -m PyInstaller --noconfirm --clean --log-level WARN --workpath $Work --distpath $OneDirParent packaging\studio.spec
}

if (-not $SkipSelfTest) {
  # studio-cli.exe is the console launcher; Studio.exe has no console to print to.
  $env:QT_QPA_PLATFORM = "offscreen"; $env:HF_HUB_OFFLINE = "1"
  Invoke-Checked "the bundle's self-test" { & (Join-Path $Bundle "studio-cli.exe") self-test }
  Remove-Item Env:\QT_QPA_PLATFORM; Remove-Item Env:\HF_HUB_OFFLINE
}

function Sign-File([string]$Path) {
  if (-not $env:STUDIO_SIGN_PFX) { return }
  Invoke-Checked "signing $Path" {
    signtool sign /f $env:STUDIO_SIGN_PFX /p $env:STUDIO_SIGN_PASSWORD /fd SHA256 `
      /tr http://timestamp.digicert.com /td SHA256 $Path
  }
}
Sign-File (Join-Path $Bundle "Studio.exe")
Sign-File (Join-Path $Bundle "studio-cli.exe")

$Iscc = (Get-Command ISCC.exe -ErrorAction SilentlyContinue).Source
if (-not $Iscc) { $Iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" }
if (-not (Test-Path $Iscc)) { throw "Inno Setup 6 (ISCC.exe) not found: install it from https://jrsoftware.org/isdl.php" }
$Suffix = if ($Flavour -eq "cuda") { "-cuda" } else { "" }
New-Item -ItemType Directory -Force -Path (Join-Path $Root "dist") | Out-Null
Invoke-Checked "Inno Setup" {
  & $Iscc "/DAppVersion=$Version" "/DSourceDir=$Bundle" "/DOutputDir=$(Join-Path $Root 'dist')" `
    "/DOutputSuffix=$Suffix" "/DIconFile=$(Join-Path $Work 'studio\studio.ico')" packaging\windows\studio.iss
}
$Setup = Join-Path $Root "dist\Studio-Setup-$Version$Suffix.exe"
Sign-File $Setup

$Size = (Get-ChildItem -Recurse $Bundle | Measure-Object -Property Length -Sum).Sum / 1MB
"onedir: {0:N0} MB; installer: {1:N0} MB ({2})" -f $Size, ((Get-Item $Setup).Length / 1MB), $Setup
