; Inno Setup 6 script for Studio: packs the PyInstaller onedir build into Studio-Setup-<version>.exe
; with a Start-menu entry, an optional desktop icon and an uninstaller.
; packaging\windows\build.ps1 runs it with /DAppVersion, /DSourceDir, /DOutputDir, /DOutputSuffix
; and /DIconFile; by hand:  ISCC /DAppVersion=0.1.0 /DSourceDir=build\onedir-cpu\Studio studio.iss
;
; Per-user install by default (no administrator prompt; Program Files when the user picks "all
; users"), because artists often lack admin rights. The uninstaller removes the program files only:
; settings, models, outputs and conversations belong to the user and stay.

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef SourceDir
  #define SourceDir "..\..\build\onedir-cpu\Studio"
#endif
#ifndef OutputDir
  #define OutputDir "..\..\dist"
#endif
#ifndef OutputSuffix
  #define OutputSuffix ""
#endif

[Setup]
; A fixed AppId: later versions upgrade this install instead of adding a second one.
AppId={{6F1C2B1E-8D0A-4C7E-9C55-3B7D1E2A4F10}
AppName=Studio
AppVersion={#AppVersion}
AppVerName=Studio {#AppVersion}
AppPublisher=Studio
DefaultDirName={autopf}\Studio
DefaultGroupName=Studio
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename=Studio-Setup-{#AppVersion}{#OutputSuffix}
; torch is large: LZMA2 solid compression with a big dictionary makes the installer much smaller.
Compression=lzma2/max
SolidCompression=yes
LZMANumBlockThreads=4
DiskSpanning=no
WizardStyle=modern
UninstallDisplayIcon={app}\Studio.exe
UninstallDisplayName=Studio {#AppVersion}
#ifdef IconFile
SetupIconFile={#IconFile}
#endif

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[InstallDelete]
; An upgrade replaces the bundled libraries wholesale: stale files from an older torch would load.
Type: filesandordirs; Name: "{app}\_internal"

[Icons]
Name: "{group}\Studio"; Filename: "{app}\Studio.exe"
; cmd /k keeps the console open, so the user can read the ✓/✗ lines. The whole command is in
; quotes as well, since cmd strips the first and the last quote when a path has ( ) & or ^.
Name: "{group}\Studio self-test"; Filename: "{cmd}"; Parameters: "/k """"{app}\studio-cli.exe"" self-test"""
Name: "{group}\{cm:UninstallProgram,Studio}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\Studio"; Filename: "{app}\Studio.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\Studio.exe"; Description: "{cm:LaunchProgram,Studio}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
Type: filesandordirs; Name: "{app}\_internal"
